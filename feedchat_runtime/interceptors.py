"""The one server interceptor every feedchat server installs.

For each call it (1) authenticates the ``authorization: Bearer <token>`` metadata unless
the method is public, setting the :class:`~feedchat_runtime.auth.Caller` for the handler,
(2) refuses user tokens on service-only methods, bounds the concurrent streams of a user
(:mod:`feedchat_runtime.limits`), (3) answers a request body protobuf
cannot parse with INVALID_ARGUMENT ``MALFORMED_REQUEST`` (:mod:`feedchat_runtime.decoding`),
and (4) turns whatever the handler raises into a precise status through
:mod:`feedchat_runtime.status`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from feedchat_runtime.auth import Caller, TokenAuthority, current_caller, set_caller
from feedchat_runtime.decoding import Undecodable, malformed, tolerant_deserializer
from feedchat_runtime.errors import FeedchatError, PermissionDenied, Unauthenticated
from feedchat_runtime.handlers import WrappingInterceptor, wrap_handler
from feedchat_runtime.limits import UserStreamSlots
from feedchat_runtime.replies import text
from feedchat_runtime.status import status_for

ALWAYS_PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


@dataclass(frozen=True)
class AuthPolicy:
    """Which methods skip authentication, which only services may call, and how many
    concurrent calls of a streaming method one user may hold (``stream_limits``).

    Method names are full gRPC paths, e.g. ``/feedchat.account.v1.AccountService/Login``.
    """

    public: Collection[str] = field(default_factory=frozenset)
    service_only: Collection[str] = field(default_factory=frozenset)
    stream_limits: Mapping[str, int] = field(default_factory=dict)
    shared_stream_limits: Mapping[str, str] = field(default_factory=dict)
    """Method -> the method in ``stream_limits`` whose per-user slots its calls take
    (unary or streaming; e.g. chat's held PollInbox calls count with Connect streams)."""

    def is_public(self, method: str) -> bool:
        return method in self.public or method.startswith(ALWAYS_PUBLIC_PREFIXES)


def _bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = text(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated(
                    "authorization metadata must be 'Bearer <token>'", reason="TOKEN_MALFORMED"
                )
            return token.strip()
    return None


class RpcGuard(WrappingInterceptor):
    """Authentication plus error mapping around every handler."""

    def __init__(self, authority: TokenAuthority | None, policy: AuthPolicy | None = None):
        self._authority = authority
        self._policy = policy or AuthPolicy()
        self.streams = UserStreamSlots(
            self._policy.stream_limits, self._policy.shared_stream_limits
        )

    def _authenticate(self, method: str, context: grpc.aio.ServicerContext) -> None:
        if self._authority is None or self._policy.is_public(method):
            set_caller(None)
            return
        token = _bearer(context.invocation_metadata())
        if token is None:
            raise Unauthenticated(
                "missing 'authorization: Bearer <token>' metadata", reason="TOKEN_MISSING"
            )
        caller: Caller = self._authority.verify_bearer(token)
        if method in self._policy.service_only and not caller.is_service:
            raise PermissionDenied("only feedchat services may call this", reason="SERVICE_ONLY")
        set_caller(caller)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        authenticate = self._authenticate
        request_deserializer = tolerant_deserializer(
            handler.request_deserializer, method, streaming=handler.request_streaming
        )

        streams = self.streams

        @contextlib.asynccontextmanager
        async def guarded(
            request: Any, context: grpc.aio.ServicerContext, streaming: bool
        ) -> AsyncIterator[None]:
            try:
                authenticate(method, context)
                if isinstance(request, Undecodable):
                    raise request.error or malformed(method)
                caller = current_caller()
                with streams.hold(method, caller.user_id if caller is not None else None):
                    yield
            except grpc.aio.AbortError:
                raise  # the handler chose its status itself
            except Exception as exc:  # CancelledError is not an Exception: it passes
                await context.abort_with_status(status_for(exc, method))

        return wrap_handler(handler, guarded, request_deserializer)


__all__ = ["AuthPolicy", "RpcGuard", "FeedchatError"]

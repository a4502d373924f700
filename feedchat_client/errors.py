"""Errors the client library raises.

Every failed RPC surfaces as :class:`RpcError`, which carries what feedchat's rich status
says: the gRPC code, the stable ``reason`` from ``google.rpc.ErrorInfo``, its metadata,
the ``RetryInfo`` delay and the ``BadRequest`` field violations. Callers branch on
``code``/``reason``, never on message text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2


@dataclass
class ErrorDetails:
    """What a client can read back from a failed call's rich status."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    field_violations: list[tuple[str, str]] = field(default_factory=list)


async def error_details(call_error: grpc.aio.AioRpcError) -> ErrorDetails:
    """Parse ErrorInfo, RetryInfo and BadRequest from a failed aio call."""
    details = ErrorDetails(code=call_error.code(), message=call_error.details() or "")
    for key, value in call_error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            retry = error_details_pb2.RetryInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                details.reason = info.reason
                details.metadata = dict(info.metadata)
            elif detail.Unpack(retry):
                delay = retry.retry_delay
                details.retry_after = delay.seconds + delay.nanos / 1e9
            elif detail.Unpack(bad):
                details.field_violations = [(v.field, v.description) for v in bad.field_violations]
    return details


class FeedchatClientError(Exception):
    """Base of every error this library raises."""


class NotLoggedIn(FeedchatClientError):
    """An authenticated call was made before sign-up or login (or after logout)."""


class ServiceNotFound(FeedchatClientError):
    """Discovery knows no live instance of a service (or cannot reach etcd)."""


class RpcError(FeedchatClientError):
    """A feedchat RPC failed; the fields come from the status's rich details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after
        self.field_violations = list(field_violations)

    @classmethod
    async def from_call(cls, error: grpc.aio.AioRpcError) -> RpcError:
        """Parse a failed aio call's status (ErrorInfo, RetryInfo, BadRequest)."""
        details = await error_details(error)
        return cls(
            details.code,
            details.message,
            reason=details.reason,
            metadata=details.metadata,
            retry_after=details.retry_after,
            field_violations=details.field_violations,
        )


STATUS_LOST_TO_A_SEND = "the stream ended while a frame was being sent; its status was lost"
"""The reason given for a stream whose end status gRPC replaced with INTERNAL."""


def lost_to_a_send(error: grpc.aio.AioRpcError) -> bool:
    """Whether a stream's INTERNAL status is grpc.aio's own: a client frame sent while the
    server was ending the stream fails, and grpc.aio then reports INTERNAL "Internal error
    from Core" in place of the status the server sent (grpc/grpc#36066). The stream ended
    for some other reason, which is gone."""
    return error.code() == grpc.StatusCode.INTERNAL and '"execute_batch"' in (
        error.debug_error_string() or ""
    )


class ChatSendError(FeedchatClientError):
    """The chat server refused a send for good (not a retryable refusal).

    ``code`` is the gRPC status code name (e.g. ``"PERMISSION_DENIED"``) and ``reason`` the
    stable reason (e.g. ``"NOT_A_MEMBER"``, ``"MESSAGE_TOO_LONG"``).
    """

    def __init__(self, client_msg_id: str, code: str, reason: str, message: str) -> None:
        super().__init__(f"send {client_msg_id} refused: {code} {reason}: {message}")
        self.client_msg_id = client_msg_id
        self.code = code
        self.reason = reason
        self.message = message

"""The domain error tree. Domain code raises these; it never imports grpc.

Each class names the gRPC status code it maps to (by name, so this module stays free of
transport code) and a default stable ``reason`` (UPPER_SNAKE, for ``google.rpc.ErrorInfo``).
:mod:`feedchat_runtime.status` turns them into rich gRPC statuses in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class FeedchatError(Exception):
    """Base of every error a client is meant to see.

    Args:
        message: Human-readable text, sent to the client as the status message.
        reason: Stable machine-readable cause, e.g. ``"POST_TOO_LONG"``.
        metadata: Extra ``ErrorInfo`` metadata (string to string), e.g. an owner address.
        retry_after: Seconds the client should wait before retrying (``RetryInfo``).
        field_violations: ``(field, description)`` pairs (``BadRequest``).
    """

    code = "INTERNAL"
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after
        self.field_violations = list(field_violations)


class InvalidArgument(FeedchatError):
    """A request field is malformed, out of bounds, or a page token is not ours."""

    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, name: str, problem: str, reason: str | None = None) -> InvalidArgument:
        """The usual case: one bad field, named in a ``BadRequest`` detail."""
        return cls(f"{name}: {problem}", reason=reason, field_violations=[(name, problem)])


class Unauthenticated(FeedchatError):
    code = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(FeedchatError):
    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class NotFound(FeedchatError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(FeedchatError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class ResourceExhausted(FeedchatError):
    """A rate limit or quota; ``retry_after`` says when trying again can succeed."""

    code = "RESOURCE_EXHAUSTED"
    default_reason = "RATE_LIMITED"


class FailedPrecondition(FeedchatError):
    """The request is fine but the system is not in a state to serve it here."""

    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class Unavailable(FeedchatError):
    """A dependency (Redis, etcd, a peer) is down; the call is safe to retry."""

    code = "UNAVAILABLE"
    default_reason = "DEPENDENCY_UNAVAILABLE"

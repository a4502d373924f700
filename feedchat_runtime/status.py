"""The one mapping from domain errors to rich gRPC statuses, and back for clients.

(The client side, reading these details back, is ``feedchat_client.errors``.)

A :class:`~feedchat_runtime.errors.FeedchatError` becomes a ``google.rpc.Status`` with an
``ErrorInfo`` (stable reason, domain ``feedchat``, metadata), plus ``RetryInfo`` when it
carries a retry delay and ``BadRequest`` when it names bad fields. Dependency failures
(Redis, etcd, PostgreSQL) become UNAVAILABLE; anything else is logged with its traceback
and answered as INTERNAL with a generic message.
"""

from __future__ import annotations

import logging
import math

import aetcd.exceptions
import asyncpg
import grpc
import redis.exceptions
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from feedchat_runtime.errors import FeedchatError, Unavailable

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "feedchat"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_rich_status(error: FeedchatError) -> grpc.Status:
    """The grpc.Status (with details in trailing metadata) for a domain error."""
    code = getattr(code_pb2, error.code)
    status = status_pb2.Status(code=code, message=error.message)
    status.details.append(
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
            )
        )
    )
    if error.retry_after is not None:
        delay = max(0.0, error.retry_after)
        seconds = math.floor(delay)
        status.details.append(
            _pack(
                error_details_pb2.RetryInfo(
                    retry_delay=duration_pb2.Duration(
                        seconds=seconds, nanos=int((delay - seconds) * 1e9)
                    )
                )
            )
        )
    if error.field_violations:
        status.details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in error.field_violations
                    ]
                )
            )
        )
    return rpc_status.to_status(status)


_CLUSTER_FAILING_OVER = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ReadOnlyError,
)
"""What a Redis Cluster answers while a master is replaced (slots not served, a demoted
node still asked for writes): over by itself within seconds."""


def translate(exc: BaseException) -> FeedchatError | None:
    """The domain error for an exception, or None when it is a bug (→ INTERNAL)."""
    if isinstance(exc, FeedchatError):
        return exc
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return Unavailable("storage is unavailable; retry shortly", reason="STORAGE_UNAVAILABLE")
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        return Unavailable("storage is loading; retry shortly", reason="STORAGE_UNAVAILABLE")
    if isinstance(exc, _CLUSTER_FAILING_OVER):
        return Unavailable("storage is failing over; retry shortly", reason="STORAGE_UNAVAILABLE")
    if isinstance(
        exc,
        (
            redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError,
            redis.exceptions.MasterDownError,
        ),
    ):  # a Redis Cluster between a master's death and its replica's promotion
        return Unavailable("storage is failing over; retry shortly", reason="STORAGE_UNAVAILABLE")
    if isinstance(
        exc,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            asyncpg.InterfaceError,
        ),
    ):
        return Unavailable(
            "the database is unavailable; retry shortly", reason="DATABASE_UNAVAILABLE"
        )
    if isinstance(
        exc,
        (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError),
    ):
        return Unavailable("registry is unavailable; retry shortly", reason="REGISTRY_UNAVAILABLE")
    return None


INTERNAL_STATUS = rpc_status.to_status(
    status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
)


def status_for(exc: BaseException, method: str) -> grpc.Status:
    """The status to answer with for an exception raised by a handler of ``method``."""
    error = translate(exc)
    if error is None:
        logger.error("unhandled error in %s", method, exc_info=exc)
        return INTERNAL_STATUS
    return to_rich_status(error)

"""Request bodies protobuf cannot parse: INVALID_ARGUMENT ``MALFORMED_REQUEST``, no traceback.

grpc.aio deserializes a unary request before any handler or interceptor code runs, and
answers a deserializer's exception with UNKNOWN and a logged traceback; a streamed frame
is deserialized inside the handler's read, where the exception would look like a bug
(INTERNAL). :func:`tolerant_deserializer` wraps a method's deserializer so neither
happens: for a unary request it returns an :class:`Undecodable` marker that the guard
turns into the error after authenticating the call; for a stream frame it raises the
error itself, from the read, so the stream ends with it. Each occurrence is counted
(:data:`UNDECODABLE`) and logged as one warning at most every ``LOG_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from feedchat_runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

LOG_EVERY = 10.0
"""Seconds between two warnings about undecodable requests (the rest are counted)."""

REASON = "MALFORMED_REQUEST"

Deserializer = Callable[[bytes], Any]


def malformed(method: str) -> InvalidArgument:
    return InvalidArgument(
        "the request body is not a valid protobuf message for this method "
        "(truncated, garbage, or a string field that is not UTF-8)",
        reason=REASON,
        metadata={"method": method},
    )


@dataclass
class UndecodableCount:
    """How many undecodable requests this process has seen; logs rate-limited warnings."""

    total: int = 0
    _unlogged: int = 0
    _logged_at: float = field(default=-LOG_EVERY)

    def note(self, method: str, error: Exception) -> None:
        self.total += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            logger.warning(
                "%d undecodable request(s) since the last warning; latest to %s: %s",
                self._unlogged,
                method,
                error,
            )
            self._unlogged = 0
            self._logged_at = now


UNDECODABLE = UndecodableCount()


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a unary request whose body did not parse."""

    method: str


def tolerant_deserializer(
    deserializer: Deserializer | None, method: str, streaming: bool
) -> Deserializer | None:
    """``deserializer``, except that a body it cannot parse never raises a bare exception:
    stream frames raise ``MALFORMED_REQUEST``, unary requests become :class:`Undecodable`."""
    if deserializer is None:
        return None
    parse = deserializer

    def decode(raw: bytes) -> Any:
        try:
            return parse(raw)
        except Exception as exc:  # DecodeError, UnicodeDecodeError, ...: the body is bad
            UNDECODABLE.note(method, exc)
            if streaming:
                raise malformed(method) from None
            return Undecodable(method)

    return decode

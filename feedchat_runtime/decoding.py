"""Request bodies protobuf cannot parse: INVALID_ARGUMENT ``MALFORMED_REQUEST``, no traceback.

It also refuses, for every method at once, the values protobuf parses but no feedchat
code can use: an id field (``*_id`` / ``*_ids``, uint64) beyond :data:`MAX_ID`
(INVALID_ARGUMENT ``ID_OUT_OF_RANGE``: ids are signed 64-bit in PostgreSQL, Redis and
Lua; channel ids are the exception, a direct channel's has the top bit set), and a
``google.protobuf.Duration`` outside the range its definition allows (INVALID_ARGUMENT
``DURATION_OUT_OF_RANGE``), wherever they sit in the request.

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

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from feedchat_runtime.errors import InvalidArgument
from feedchat_runtime.ids import MAX_ID

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


DURATION_MAX_SECONDS = 315_576_000_000
"""The largest Duration google/protobuf/duration.proto allows (about 10,000 years)."""

_ID_TYPES = (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)
_FULL_RANGE = ("channel_id", "channel_ids")
"""Id fields that use all 64 bits: a direct chat channel's id has the top bit set."""
_DURATION = "google.protobuf.Duration"
_ID, _TIME, _NESTED = range(3)

Check = tuple[str, int, bool]
"""One field to look at: its name, what it is (_ID, _TIME or _NESTED), whether repeated."""
_plans: dict[str, tuple[Check, ...]] = {}


def _plan(descriptor: Descriptor) -> tuple[Check, ...]:
    """The fields of a message type that are ids or Durations, or may hold some (cached
    per type, so a frame costs a few attribute reads)."""
    name = descriptor.full_name
    known = _plans.get(name)
    if known is not None:
        return known
    _plans[name] = ()  # a recursive type: nothing to check while computing
    checks: list[Check] = []
    for member in descriptor.fields:
        kind = member.message_type
        if kind is not None:
            if kind.full_name == _DURATION:
                checks.append((member.name, _TIME, member.is_repeated))
            elif _plan(kind):
                checks.append((member.name, _NESTED, member.is_repeated))
        elif (
            member.type in _ID_TYPES
            and member.name.endswith(("_id", "_ids"))
            and not member.name.endswith(_FULL_RANGE)
        ):
            checks.append((member.name, _ID, member.is_repeated))
    _plans[name] = tuple(checks)
    return _plans[name]


def out_of_range(message: Message, path: str = "") -> InvalidArgument | None:
    """The first id beyond :data:`MAX_ID` or invalid Duration in ``message``, as an error."""
    for name, kind, repeated in _plan(message.DESCRIPTOR):  # type: ignore[arg-type]
        if kind == _ID:
            value = getattr(message, name)
            if (max(value, default=0) if repeated else value) > MAX_ID:
                return InvalidArgument.field(
                    f"{path}{name}", f"ids are at most {MAX_ID} (signed 64-bit)", "ID_OUT_OF_RANGE"
                )
            continue
        if repeated:
            items = getattr(message, name)
        elif message.HasField(name):
            items = (getattr(message, name),)
        else:
            continue
        for item in items:
            if kind == _TIME:
                if abs(item.seconds) > DURATION_MAX_SECONDS or abs(item.nanos) > 999_999_999:
                    return InvalidArgument.field(
                        f"{path}{name}", "not a valid duration", "DURATION_OUT_OF_RANGE"
                    )
            else:
                error = out_of_range(item, f"{path}{name}.")
                if error is not None:
                    return error
    return None


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a unary request that cannot be served: its body did not parse, or
    it holds a value out of range (``error``)."""

    method: str
    error: InvalidArgument | None = None


def tolerant_deserializer(
    deserializer: Deserializer | None, method: str, streaming: bool
) -> Deserializer | None:
    """``deserializer``, except that a body it cannot parse, or one with a value out of
    range, never raises a bare exception: stream frames raise the INVALID_ARGUMENT, unary
    requests become :class:`Undecodable`."""
    if deserializer is None:
        return None
    parse = deserializer

    def decode(raw: bytes) -> Any:
        try:
            request = parse(raw)
        except Exception as exc:  # DecodeError, UnicodeDecodeError, ...: the body is bad
            UNDECODABLE.note(method, exc)
            if streaming:
                raise malformed(method) from None
            return Undecodable(method)
        if isinstance(request, Message):
            error = out_of_range(request)
            if error is not None:
                if streaming:
                    raise error
                return Undecodable(method, error)
        return request

    return decode

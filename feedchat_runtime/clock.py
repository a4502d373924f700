"""Time in one unit: milliseconds since the Unix epoch, and its protobuf Timestamp.

Every service keeps times as integer milliseconds (``*_ms``) and takes its clock as a
:data:`Clock` (tests inject their own); the servicers turn them into
``google.protobuf.Timestamp`` with :func:`timestamp` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

Clock = Callable[[], int]
"""Milliseconds since the Unix epoch."""


def wall_ms() -> int:
    """The wall clock, in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def timestamp(ms: int) -> Timestamp:
    """A protobuf Timestamp of ``ms`` milliseconds since the Unix epoch."""
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp

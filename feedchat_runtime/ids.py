"""The range of feedchat ids (users, posts, channels, messages: Snowflakes).

Ids are positive signed 64-bit integers, so every id is in ``1..MAX_ID``; 0 means "none"
in requests. A dependency-free module: the token code and every servicer check ids here.
"""

from __future__ import annotations

MAX_ID = (1 << 63) - 1
"""The largest id."""


def is_valid_id(value: int) -> bool:
    """Whether ``value`` can be a feedchat id."""
    return 0 < value <= MAX_ID


PADDED_WIDTH = 20
"""Digits of :func:`pad`: every id fits (``MAX_ID`` has 19)."""


def pad(value: int) -> str:
    """An id as a fixed-width decimal: in Redis, members ordered lexicographically (a
    sorted set of score 0, ZRANGEBYLEX) are then in numeric order. Snowflake ids exceed
    2^53, so they can never be exact float scores."""
    return f"{value:0{PADDED_WIDTH}d}"

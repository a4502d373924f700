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

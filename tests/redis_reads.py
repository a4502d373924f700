"""Reading Redis in tests: replies typed as the bytes our clients return."""

from __future__ import annotations

from typing import Any

from feedchat_runtime.redis_client import RedisClient

Entry = tuple[bytes, dict[bytes, bytes]]


async def stream_entries(redis: RedisClient, key: str) -> list[Entry]:
    """Every entry of the stream ``key``, oldest first (XRANGE - +)."""
    reply: Any = await redis.xrange(key)  # typed for either decode_responses setting
    return [(entry_id, dict(fields)) for entry_id, fields in reply or []]

"""The user cache's fill script writes a whole entry with its expiry."""

from __future__ import annotations

import redis.asyncio as aioredis

from account_svc.keys import user_cache_key
from account_svc.scripts import FILL_CACHE


async def test_fill_replaces_the_whole_entry_and_sets_its_ttl(redis: aioredis.Redis) -> None:
    script = redis.register_script(FILL_CACHE)
    key = user_cache_key(42)
    await redis.hset(key, mapping={"username": "old", "stale_field": "x"})
    assert await script(keys=[key], args=[60_000, "username", "ann", "bio", "hi"]) == 1
    assert await redis.hgetall(key) == {b"username": b"ann", b"bio": b"hi"}
    assert 0 < await redis.pttl(key) <= 60_000

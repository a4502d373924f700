"""The cached member set's script: writers add only to a cached set, refills fill only a
missing one (so neither makes a partial set nor overwrites one kept in step)."""

from __future__ import annotations

import redis.asyncio as aioredis

from chat_svc.keys import chan_members_key
from chat_svc.scripts import CACHE_MEMBERS


async def test_cache_members_adds_to_cached_sets_and_fills_missing_ones(
    redis: aioredis.Redis,
) -> None:
    script = redis.register_script(CACHE_MEMBERS)
    key = chan_members_key(7)
    assert await script(keys=[key], args=[1, "5"]) == 0  # not cached: left to a refill
    assert not await redis.exists(key)
    assert await script(keys=[key], args=[0, "1", "2"]) == 1  # refill of a missing set
    assert await script(keys=[key], args=[0, "9"]) == 0  # never over a cached set
    assert await script(keys=[key], args=[1, "3"]) == 1  # a writer keeps it in step
    assert await redis.smembers(key) == {b"1", b"2", b"3"}

"""Each of account's Lua scripts called directly (through the one loader, on one node and
on a cluster): what it writes and answers, apart from the store around it."""

from __future__ import annotations

import pytest

from account_svc import scripts
from account_svc.keys import login_user_key, user_cache_key
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient


@pytest.fixture
def lua(redis: RedisClient) -> LuaScripts:
    return LuaScripts(redis, scripts.SOURCES)


async def test_hit_limit_counts_attempts_up_to_the_limit_in_one_window(
    lua: LuaScripts, redis: RedisClient
) -> None:
    key = [login_user_key("ann")]
    allowed, left = await lua.call("hit_limit", key, [2, 60_000])
    assert allowed == 1 and 0 < left <= 60_000
    assert (await lua.call("hit_limit", key, [2, 60_000]))[0] == 1
    refused, wait = await lua.call("hit_limit", key, [2, 60_000])
    assert refused == 0 and 0 < wait <= 60_000
    assert await redis.get(login_user_key("ann")) == b"2"


async def test_refund_limit_gives_one_attempt_back_and_drops_an_empty_counter(
    lua: LuaScripts, redis: RedisClient
) -> None:
    key = [login_user_key("bob")]
    assert await lua.call("refund_limit", key) == 0  # nothing counted: nothing to give
    await lua.call("hit_limit", key, [5, 60_000])
    assert await lua.call("refund_limit", key) == 1
    assert not await redis.exists(login_user_key("bob"))


async def test_fill_cache_replaces_the_whole_entry_and_sets_its_ttl(
    lua: LuaScripts, redis: RedisClient
) -> None:
    key = user_cache_key(42)
    await redis.hset(key, mapping={"username": "old", "stale_field": "x"})
    assert await lua.call("fill_cache", [key], [60_000, "username", "ann", "bio", "hi"]) == 1
    assert await redis.hgetall(key) == {b"username": b"ann", b"bio": b"hi"}
    assert 0 < await redis.pttl(key) <= 60_000

"""Each of presence's Lua scripts called directly (through the one loader, on one node
and on a cluster): what it writes, publishes and answers, apart from the store around it."""

from __future__ import annotations

import pytest

from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from presence_svc import scripts
from presence_svc.store import channel, conns_key, devices_key, state_key, sweep_key

USER, NOW = 8, 1_000_000
KEYS = [conns_key(USER), devices_key(USER), state_key(USER)]


@pytest.fixture
def lua(redis: RedisClient) -> LuaScripts:
    return LuaScripts(redis, scripts.SOURCES)


async def _beat(lua: LuaScripts, conn: str, status: str, now: int, most: int = 5) -> list[str]:
    args = [conn, status, now, now + 30_000, most, channel(USER), USER]
    return [text(x) for x in await lua.call("hb", KEYS, args)]


async def test_heartbeat_makes_a_user_online_once_and_refuses_a_device_too_many(
    lua: LuaScripts, redis: RedisClient
) -> None:
    assert await _beat(lua, "phone", "online", NOW) == ["1", "online", "1"]
    assert await _beat(lua, "phone", "", NOW + 1) == ["0", "online", "1"]
    assert await _beat(lua, "laptop", "away", NOW + 2, most=1) == ["-1", "", "0"]
    assert await redis.zcard(conns_key(USER)) == 1


async def test_disconnect_of_the_last_device_makes_the_user_offline(
    lua: LuaScripts, redis: RedisClient
) -> None:
    await _beat(lua, "phone", "online", NOW)
    reply = await lua.call("disc", KEYS, ["phone", NOW + 5, channel(USER), USER])
    assert [text(x) for x in reply] == ["1", "offline", "2", "0"]
    assert text(await redis.hget(state_key(USER), "seen")) == str(NOW + 5)


async def test_sweep_settles_expired_devices_once(lua: LuaScripts) -> None:
    await _beat(lua, "phone", "online", NOW)
    late = NOW + 60_000
    first = await lua.call("sweep", KEYS, [late, channel(USER), USER])
    again = await lua.call("sweep", KEYS, [late, channel(USER), USER])
    assert [text(x) for x in first][:3] == ["1", "offline", "2"]
    assert [text(x) for x in again][:3] == ["0", "offline", "2"]


async def test_unindex_drops_only_users_whose_deadline_did_not_move(
    lua: LuaScripts, redis: RedisClient
) -> None:
    key = sweep_key(0)
    await redis.zadd(key, {"1": 100, "2": 900})
    assert await lua.call("unidx", [key], [500, 1, 2]) == 1
    assert [text(m) for m in await redis.zrange(key, 0, -1)] == ["2"]

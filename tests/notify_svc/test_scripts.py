"""Each of notify's Lua scripts called directly (through the one loader, on one node and
on a cluster): what it writes and answers, apart from the store around it."""

from __future__ import annotations

import pytest

from feedchat_runtime.ids import pad
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.notify_queue import NotificationKind
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from notify_svc import scripts
from notify_svc.store import (
    devices_key,
    list_key,
    mutes_key,
    notification_key,
    open_key,
    seen_key,
)

USER, CHANNEL, NOW = 3, 70, 1_700_000_000_000
KIND = NotificationKind.CHAT_MESSAGE


@pytest.fixture
def lua(redis: RedisClient) -> LuaScripts:
    return LuaScripts(redis, scripts.SOURCES)


async def _apply(lua: LuaScripts, message: int, open_id: str = "", keep: int = 10) -> list[str]:
    """One apply call for ``message`` of CHANNEL, declaring ``open_id`` as the open one."""
    keys = [
        seen_key(USER, message),
        mutes_key(USER),
        open_key(USER, KIND, CHANNEL),
        list_key(USER),
        notification_key(USER, message),
    ]
    if open_id:
        keys.append(notification_key(USER, int(open_id)))
    args = [pad(message), KIND.value, CHANNEL, 9, "hi", NOW, 60_000, 60_000, keep, open_id, 0]
    return [text(x) for x in await lua.call("apply", keys, args)]


async def test_apply_creates_then_asks_to_declare_the_open_one_then_collapses(
    lua: LuaScripts, redis: RedisClient
) -> None:
    assert await _apply(lua, 1) == ["created", pad(1), "1"]
    assert await _apply(lua, 1) == ["created", pad(1), "0"]  # a retried job: replayed
    assert await _apply(lua, 2) == ["retry", pad(1), "0"]
    assert await _apply(lua, 2, open_id=pad(1)) == ["collapsed", pad(1), "1"]
    assert text(await redis.hget(notification_key(USER, 1), "count")) == "2"
    assert await redis.zcard(list_key(USER)) == 1


async def test_apply_skips_a_muted_channel(lua: LuaScripts, redis: RedisClient) -> None:
    await redis.sadd(mutes_key(USER), str(CHANNEL))
    assert await _apply(lua, 5) == ["muted", "", "1"]
    assert not await redis.exists(list_key(USER))


async def test_mark_read_counts_unread_ones_and_closes_their_collapsing(
    lua: LuaScripts, redis: RedisClient
) -> None:
    await _apply(lua, 1)
    keys = [notification_key(USER, 1), open_key(USER, KIND, CHANNEL)]
    assert await lua.call("mark_read", keys, [pad(1)]) == 1
    assert await lua.call("mark_read", keys, [pad(1)]) == 0
    assert not await redis.exists(open_key(USER, KIND, CHANNEL))


async def test_put_device_stores_up_to_the_limit_and_replaces_a_known_one(
    lua: LuaScripts, redis: RedisClient
) -> None:
    key = [devices_key(USER)]
    assert await lua.call("put_device", key, ["a", "{}", 1]) == 1
    assert await lua.call("put_device", key, ["b", "{}", 1]) == 0
    assert await lua.call("put_device", key, ["a", '{"v": 2}', 1]) == 1
    assert text(await redis.hget(devices_key(USER), "a")) == '{"v": 2}'


async def test_add_mute_stores_up_to_the_limit_and_accepts_a_repeat(lua: LuaScripts) -> None:
    key = [mutes_key(USER)]
    assert await lua.call("add_mute", key, [1, 1]) == 1
    assert await lua.call("add_mute", key, [1, 1]) == 1
    assert await lua.call("add_mute", key, [2, 1]) == 0

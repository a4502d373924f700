"""Each of chat's Lua scripts called directly (through the one loader, on one node and on
a cluster): what it writes and answers, apart from the store around it."""

from __future__ import annotations

from typing import Any

import pytest

from chat_svc import scripts
from chat_svc.keys import (
    bucket,
    chan_history_key,
    chan_ids_key,
    chan_members_key,
    chan_seq_key,
    chan_state_key,
    chan_stats_key,
    cursor_key,
    dedup_key,
    fanout_due_key,
    fanout_member,
    fanout_records_key,
    inbox_ids_key,
    inbox_key,
    rate_key,
    read_key,
)
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from tests.conftest import run_on_both_topologies

CHANNEL, SENDER, OTHER = 7, 11, 12
MESSAGE_ID, CREATED_MS = 4242, 1_700_000_000_000


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run_on_both_topologies(metafunc)


@pytest.fixture
def lua(redis: RedisClient) -> LuaScripts:
    return LuaScripts(redis, scripts.SOURCES)


def _send(
    sender: int,
    cmid: str,
    digest: str,
    message_id: int = MESSAGE_ID,
    kind: str = "",
    target: int = 0,
    max_edits: int = 100,
) -> tuple[list[str], list[str | int]]:
    """One send's keys and arguments (a message, or with ``kind`` an event on ``target``)."""
    keys = [
        dedup_key(CHANNEL, sender, cmid),
        rate_key(CHANNEL, sender),
        chan_members_key(CHANNEL),
        chan_seq_key(CHANNEL),
        chan_history_key(CHANNEL),
        fanout_due_key(bucket(CHANNEL)),
        fanout_records_key(bucket(CHANNEL)),
        chan_stats_key(CHANNEL, CREATED_MS // 86_400_000),
        chan_ids_key(CHANNEL),
        chan_state_key(CHANNEL),
    ]
    args: list[str | int] = [sender, digest, message_id, CHANNEL, "hi", cmid, CREATED_MS]
    args += [1000, 60, "10.0", 10, CREATED_MS, 3600]
    args += [kind, str(target), "", 60_000, 0, 20, 3, 1000, max_edits]
    assert (len(keys), len(args)) == (scripts.SEND_KEYS, scripts.SEND_ARGS)
    return keys, args


def _flat(reply: list[object]) -> list[str]:
    return [text(x) for x in reply]


async def test_send_many_stores_once_refuses_outsiders_and_answers_a_retry_dup(
    lua: LuaScripts, redis: RedisClient
) -> None:
    await redis.sadd(chan_members_key(CHANNEL), SENDER, OTHER)
    mine, mine_args = _send(SENDER, "c1", "d1")
    again_keys, again_args = _send(SENDER, "c1", "d1")
    stranger, stranger_args = _send(99, "c2", "d2")
    replies = await lua.call(
        "send_many",
        [*mine, *again_keys, *stranger],
        [3, 60_000, *mine_args, *again_args, *stranger_args],
    )
    stored, dup, refused = (_flat(r) for r in replies)
    assert stored[:2] == ["ok", "1"] and sorted(stored[4:]) == [str(SENDER), str(OTHER)]
    assert dup[:4] == ["dup", str(MESSAGE_ID), "1", str(CREATED_MS)]
    assert refused == ["not_member"]
    assert await redis.xlen(chan_history_key(CHANNEL)) == 1
    name = fanout_member(CHANNEL, 1)
    assert await redis.hexists(fanout_records_key(bucket(CHANNEL)), name)


async def test_send_many_answers_conflict_for_a_reused_client_msg_id(
    lua: LuaScripts, redis: RedisClient
) -> None:
    await redis.sadd(chan_members_key(CHANNEL), SENDER)
    first, first_args = _send(SENDER, "c1", "d1")
    other, other_args = _send(SENDER, "c1", "another text")
    replies = await lua.call("send_many", [*first, *other], [2, 0, *first_args, *other_args])
    assert [_flat(r)[0] for r in replies] == ["ok", "conflict"]


async def test_a_delete_drops_the_pending_fanouts_of_its_message_and_edits(
    lua: LuaScripts, redis: RedisClient
) -> None:
    await redis.sadd(chan_members_key(CHANNEL), SENDER, OTHER)
    sends = [
        _send(SENDER, "m", "d1"),
        _send(SENDER, "e", "d2", MESSAGE_ID + 1, "edit", MESSAGE_ID),
        _send(SENDER, "x", "d3", MESSAGE_ID + 2, "delete", MESSAGE_ID),
    ]
    for keys, args in sends:  # no fanout ever finished: each left a pending record
        await lua.call("send_many", keys, [1, 60_000, *args])
    records = await redis.hkeys(fanout_records_key(bucket(CHANNEL)))
    assert sorted(text(r) for r in records) == [fanout_member(CHANNEL, 3)]  # the delete's
    assert await redis.zcard(fanout_due_key(bucket(CHANNEL))) == 1
    # a retry of the deleted message's send now names no recipients to fan out to
    keys, args = _send(SENDER, "m", "d1")
    [dup] = await lua.call("send_many", keys, [1, 60_000, *args])
    assert _flat(dup)[0] == "dup" and len(dup) == 6


async def test_edits_of_one_message_stop_at_the_limit(lua: LuaScripts, redis: RedisClient) -> None:
    await redis.sadd(chan_members_key(CHANNEL), SENDER)
    keys, args = _send(SENDER, "m", "d1")
    await lua.call("send_many", keys, [1, 60_000, *args])
    replies = []
    for i in range(3):
        keys, args = _send(SENDER, f"e{i}", f"e{i}", MESSAGE_ID + 1 + i, "edit", MESSAGE_ID, 2)
        [reply] = await lua.call("send_many", keys, [1, 60_000, *args])
        replies.append(_flat(reply)[0])
    assert replies == ["ok", "ok", "edit_limit"]


def _block(message_id: int, seq: int, scrub: str = "", body: str = "hi") -> list[str | int]:
    """One message's block of APPEND_MANY arguments."""
    fields: list[str | int] = [CHANNEL, message_id, seq, SENDER, body, f"c{seq}", CREATED_MS]
    fields.append(scrub)
    return [len(fields), *fields]


async def _append(
    lua: LuaScripts, user: int, *appends: tuple[list[str | int], int]
) -> list[list[str]]:
    """APPEND_MANY of (message block, mine) pairs to ``user``'s inbox, one block each."""
    keys: list[str] = []
    heads: list[str | int] = []
    pairs: list[int] = []
    for number, (block, mine) in enumerate(appends, 1):
        keys += [inbox_key(user), inbox_ids_key(user), read_key(user)]
        heads += block
        pairs += [number, mine]
    replies = await lua.call("append_many", keys, [100, 50, len(appends), *heads, *pairs])
    return [_flat(r) for r in replies]


async def test_a_message_whose_delete_reached_the_inbox_first_is_never_appended(
    lua: LuaScripts, redis: RedisClient
) -> None:
    delete = _block(MESSAGE_ID + 9, 2, scrub=str(MESSAGE_ID))  # the delete's own id
    [[status, *_]] = await _append(lua, OTHER, (delete, 0))
    assert status == "ok"
    assert await _append(lua, OTHER, (_block(MESSAGE_ID, 1), 0)) == [["gone"]]
    assert await redis.xlen(inbox_key(OTHER)) == 1


async def test_append_adds_a_message_to_an_inbox_once_and_marks_the_senders_own_read(
    lua: LuaScripts, redis: RedisClient
) -> None:
    [[status, prev, entry]] = await _append(lua, SENDER, (_block(MESSAGE_ID, 3), 1))
    assert (status, prev) == ("ok", "0-0")
    assert await _append(lua, SENDER, (_block(MESSAGE_ID, 3), 1)) == [["dup", "0-0", entry]]
    assert await redis.xlen(inbox_key(SENDER)) == 1
    assert text(await redis.hget(read_key(SENDER), str(CHANNEL))) == "3"


async def test_append_answers_gone_for_an_appended_message_trimmed_since(
    lua: LuaScripts, redis: RedisClient
) -> None:
    await _append(lua, OTHER, (_block(MESSAGE_ID, 1), 0))
    await redis.delete(inbox_key(OTHER))
    assert await _append(lua, OTHER, (_block(MESSAGE_ID, 1), 0)) == [["gone"]]
    assert not await redis.exists(read_key(OTHER))


async def test_one_append_many_call_appends_several_messages_in_order_each_once(
    lua: LuaScripts, redis: RedisClient
) -> None:
    first, second = _block(MESSAGE_ID, 1, body="one"), _block(MESSAGE_ID + 1, 2, body="two")
    replies = await _append(lua, OTHER, (first, 0), (second, 0), (first, 0))
    assert [r[0] for r in replies] == ["ok", "ok", "dup"]
    assert replies[1][1] == replies[0][2]  # the second entry follows the first
    assert replies[2][2] == replies[0][2]  # the repeat names the first's entry
    rows: Any = await redis.xrange(inbox_key(OTHER))
    assert [text(fields[b"text"]) for _, fields in rows] == ["one", "two"]


async def test_a_failing_append_fails_alone_and_writes_nothing(
    lua: LuaScripts, redis: RedisClient
) -> None:
    broken = f"chat:broken:{{u:{OTHER}}}"  # the inbox's slot, not a hash
    await redis.rpush(broken, "x")
    keys = [inbox_key(OTHER), inbox_ids_key(OTHER), broken]
    keys += [inbox_key(OTHER), inbox_ids_key(OTHER), read_key(OTHER)]
    blocks = [*_block(MESSAGE_ID, 1), *_block(MESSAGE_ID + 1, 2)]
    replies = await lua.call("append_many", keys, [100, 50, 2, *blocks, 1, 0, 2, 0])
    (failed, *_), (stored, *_) = (_flat(r) for r in replies)
    assert (failed, stored) == ("error", "ok")
    assert await redis.xlen(inbox_key(OTHER)) == 1
    assert await redis.zscore(inbox_ids_key(OTHER), str(MESSAGE_ID)) is None


async def test_fanout_claim_takes_due_records_moves_them_ahead_and_drops_orphans(
    lua: LuaScripts, redis: RedisClient
) -> None:
    due, records = fanout_due_key(0), fanout_records_key(0)
    await redis.zadd(due, {"7:1": 0, "7:2": 0, "7:3": 2**50})
    await redis.hset(records, mapping={"7:1": "11 12", "7:3": "13"})
    [claimed] = await lua.call("claim", [due, records], [60_000, 10])
    assert _flat(claimed) == ["7:1", "11 12"]  # 7:2 had no record, 7:3 is not due
    assert await redis.zscore(due, "7:2") is None
    assert await lua.call("claim", [due, records], [60_000, 10]) == [[]]


async def test_cache_members_adds_to_cached_sets_and_fills_missing_ones(
    lua: LuaScripts, redis: RedisClient
) -> None:
    key = chan_members_key(CHANNEL)
    assert await lua.call("cache_members", [key], [1, "5"]) == 0  # not cached: left to a refill
    assert not await redis.exists(key)
    assert await lua.call("cache_members", [key], [0, "1", "2"]) == 1  # refill of a missing set
    assert await lua.call("cache_members", [key], [0, "9"]) == 0  # never over a cached set
    assert await lua.call("cache_members", [key], [1, "3"]) == 1  # a writer keeps it in step
    assert await redis.smembers(key) == {b"1", b"2", b"3"}


async def test_set_cursor_moves_a_device_cursor_forward_only(
    lua: LuaScripts, redis: RedisClient
) -> None:
    key = cursor_key(SENDER)
    assert await lua.call("set_cursor", [key], ["phone", 100, 2]) == 1
    assert await lua.call("set_cursor", [key], ["phone", 100, 1]) == 0
    assert await lua.call("set_cursor", [key], ["phone", 99, 9]) == 0
    assert await lua.call("set_cursor", [key], ["phone", 101, 0]) == 1
    assert text(await redis.hget(key, "phone")) == "101-0"


async def test_set_read_moves_the_marker_forward_never_past_the_channel_end(
    lua: LuaScripts,
) -> None:
    key = read_key(SENDER)
    assert _flat(await lua.call("set_read", [key], [CHANNEL, 9, 5])) == ["1", "5"]
    assert _flat(await lua.call("set_read", [key], [CHANNEL, 4, 8])) == ["0", "5"]
    assert _flat(await lua.call("set_read", [key], [CHANNEL, 7, 8])) == ["1", "7"]

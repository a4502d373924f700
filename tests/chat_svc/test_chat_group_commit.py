"""Group commit: sends submitted together share one Redis call but keep their own outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from chat_svc.app import ChatApp
from chat_svc.groups import Channels
from chat_svc.keys import chan_seq_key
from chat_svc.model import SendOutcome
from feedchat_runtime.errors import AlreadyExists, PermissionDenied
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import StartCluster


async def _store(app: ChatApp, sender: int, channel: int, cmid: str, text: str) -> SendOutcome:
    outcome: SendOutcome = await app.store.store_message(
        sender_id=sender,
        channel_id=channel,
        message_id=app.delivery.ids.next_id(),
        client_msg_id=cmid,
        text=text,
        created_ms=1,
        rate=1000.0,
        burst=1000,
    )
    return outcome


async def test_sends_batched_together_keep_their_own_outcomes(chat_cluster: StartCluster) -> None:
    (app,) = await chat_cluster(1)
    channels = Channels(app.store, app.records, app.delivery.ids, 500)
    channel = (await channels.open_direct(1, 2)).channel_id
    other = (await channels.open_direct(3, 4)).channel_id
    batches = 0
    run = app.store._sends._run

    async def counting(calls: list[Any]) -> Sequence[list[str] | BaseException]:
        nonlocal batches
        batches += 1
        return await run(calls)

    app.store._sends._run = counting
    await _store(app, 1, channel, "taken", "first")
    batches = 0
    results = await asyncio.gather(
        *(_store(app, 1, channel, f"c{i}", f"m{i}") for i in range(20)),
        _store(app, 1, channel, "twice", "same"),
        _store(app, 1, channel, "twice", "same"),  # same id in the same batch: one message
        _store(app, 1, channel, "taken", "other text"),  # reused id, other content
        _store(app, 1, other, "outsider", "not a member"),
        return_exceptions=True,
    )
    assert batches == 1  # submitted in one tick: one round trip
    fresh = [r for r in results[:20] if isinstance(r, SendOutcome)]
    assert len(fresh) == 20 and not any(r.duplicate for r in fresh)
    assert [r.message.seq for r in fresh] == list(range(2, 22))  # dense, in submit order
    first, again = results[20], results[21]
    assert isinstance(first, SendOutcome) and isinstance(again, SendOutcome)
    assert not first.duplicate and again.duplicate
    assert again.message.message_id == first.message.message_id
    assert isinstance(results[22], AlreadyExists)
    assert isinstance(results[23], PermissionDenied)
    history = await app.store.history(channel, None, 100)
    assert [m.text for m in reversed(history)] == ["first", *(f"m{i}" for i in range(20)), "same"]


async def test_a_redis_error_fails_only_its_own_send(
    chat_cluster: StartCluster, redis: RedisClient
) -> None:
    (app,) = await chat_cluster(1)
    channels = Channels(app.store, app.records, app.delivery.ids, 500)
    good = (await channels.open_direct(1, 2)).channel_id
    broken = (await channels.open_direct(5, 6)).channel_id
    await redis.set(chan_seq_key(broken), "not a number")  # INCR fails: ERR
    ok, bad = await asyncio.gather(
        _store(app, 1, good, "g", "fine"),
        _store(app, 5, broken, "b", "doomed"),
        return_exceptions=True,
    )
    assert isinstance(ok, SendOutcome) and ok.message.seq == 1
    assert isinstance(bad, Exception) and "not an integer" in str(bad)
    with pytest.raises(Exception, match="not an integer"):
        await _store(app, 5, broken, "b2", "doomed too")


async def test_a_node_that_lost_its_scripts_stores_each_send_of_a_batch_once(
    chat_cluster: StartCluster, redis: RedisClient
) -> None:
    (app,) = await chat_cluster(1)
    channels = Channels(app.store, app.records, app.delivery.ids, 500)
    pairs = [
        (2 * i + 1, (await channels.open_direct(2 * i + 1, 2 * i + 2)).channel_id)
        for i in range(12)
    ]
    await asyncio.gather(*(_store(app, s, c, "warm", "w") for s, c in pairs))
    # one node restarted (or a replica was promoted): it has no scripts; on a cluster the
    # batch's other nodes have theirs, and ran their part of the pipeline already
    if isinstance(redis, RedisCluster):
        node = redis.get_node_from_key(chan_seq_key(pairs[0][1]))
        await redis.execute_command("SCRIPT FLUSH", target_nodes=node)
    else:
        await redis.script_flush()
    results = await asyncio.gather(*(_store(app, s, c, "after", "a") for s, c in pairs))
    assert [(r.duplicate, r.message.seq) for r in results] == [(False, 2)] * len(pairs)

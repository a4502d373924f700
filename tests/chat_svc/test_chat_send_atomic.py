"""A send is two steps, each all or nothing: the channel step (dedup, rate, membership,
seq, history, pending-fanout record) stores nothing when a Redis fault hits it part-way,
and an inbox append that fails is finished later by a claim, once per inbox."""

from __future__ import annotations

import functools

from chat_svc.app import ChatApp
from chat_svc.groups import Channels
from chat_svc.keys import (
    bucket,
    chan_history_key,
    chan_seq_key,
    dedup_key,
    fanout_records_key,
    inbox_key,
    rate_key,
)
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import Device, OpenDevice, StartCluster
from tests.waiting import wait_until

SENDER, FIRST, LAST = 11, 12, 19
FAST_CLAIMS = {"fanout_claim_idle": 0.5, "fanout_claim_interval": 0.1}


async def _failed(device: Device, cmid: str) -> None:
    await wait_until(
        lambda: any(e.client_msg_id == cmid for e in device.send_errors),
        what=f"send_error for {cmid}",
    )


async def _inbox_texts(app: ChatApp, user: int) -> list[tuple[str, int]]:
    return [(m.text, m.seq) for m in await app.store.read_inbox(user, "0-0", 10)]


async def _no_pending_fanout(app: ChatApp) -> bool:
    pending: int = await app.store.pending_fanouts()
    return pending == 0


async def test_channel_step_fault_leaves_nothing_and_a_retry_stores_one(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    (app,) = await chat_cluster(1)
    channels = Channels(app.store, app.records, app.delivery.ids, 500)
    group = (await channels.create_group(SENDER, "g", [FIRST, LAST])).channel_id
    sender = await devices(SENDER, app.address)
    # a history entry the counter has not reached: XADD <seq>-0 would be refused
    await redis.xadd(chan_history_key(group), {"x": "1"}, id="1-0")

    cmid = sender.send(group, "all or nothing", client_msg_id="once")
    await _failed(sender, cmid)
    assert not sender.acks
    # nothing of the message was written: no seq, dedup record, token, pending record, inbox
    assert await redis.get(chan_seq_key(group)) is None
    assert await redis.exists(dedup_key(group, SENDER, cmid)) == 0
    assert await redis.exists(rate_key(group, SENDER)) == 0
    assert await redis.hlen(fanout_records_key(bucket(group))) == 0
    for uid in (SENDER, FIRST, LAST):
        assert await redis.xlen(inbox_key(uid)) == 0, uid

    await redis.delete(chan_history_key(group))
    sender.send(group, "all or nothing", client_msg_id="once")  # the retry
    await wait_until(lambda: sender.acks, what="the retry's ack")
    first = sender.acks[0]
    assert not first.duplicate and first.seq == 1
    sender.send(group, "all or nothing", client_msg_id="once")
    await wait_until(lambda: len(sender.acks) == 2, what="the second retry's ack")
    again = sender.acks[1]
    assert again.duplicate and again.message_id == first.message_id
    for uid in (SENDER, FIRST, LAST):
        await wait_until(
            functools.partial(_inbox_texts, app, uid), what=f"the message in {uid}'s inbox"
        )
        assert await _inbox_texts(app, uid) == [("all or nothing", 1)], uid
    history = await app.store.history(group, None, 10)
    assert [m.message_id for m in history] == [first.message_id]
    await wait_until(lambda: _no_pending_fanout(app), what="no pending fanout")


async def test_failed_inbox_append_is_finished_by_a_claim_once_per_inbox(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    (app,) = await chat_cluster(1, **FAST_CLAIMS)
    channels = Channels(app.store, app.records, app.delivery.ids, 500)
    group = (await channels.create_group(SENDER, "g", [FIRST, LAST])).channel_id
    sender = await devices(SENDER, app.address)
    first = await devices(FIRST, app.address)
    await redis.set(inbox_key(LAST), "not a stream")  # LAST's append fails

    ack = await sender.sent(sender.send(group, "late but once", client_msg_id="once"))
    assert not ack.duplicate and ack.seq == 1  # the channel step is the commit point
    await wait_until(lambda: first.texts() == ["late but once"], what="FIRST's message")
    assert await app.store.pending_fanouts() == 1  # LAST is still owed the message
    await wait_until(lambda: app.claims.claimed >= 1, what="a failed claim of the record")

    await redis.delete(inbox_key(LAST))  # repaired: the next claim finishes the fanout
    await wait_until(lambda: _no_pending_fanout(app), what="the fanout finished")
    for uid in (SENDER, FIRST, LAST):  # the claim appended again: still one entry each
        assert await _inbox_texts(app, uid) == [("late but once", 1)], uid
    last = await devices(LAST, app.address)
    assert last.texts() == ["late but once"]
    assert first.texts() == ["late but once"]

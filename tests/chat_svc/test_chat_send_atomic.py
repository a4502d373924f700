"""A send is stored whole or not at all: a Redis fault part-way leaves nothing behind, and a
retry with the same client_msg_id then stores exactly one message."""

from __future__ import annotations

import pytest

from chat_svc.groups import Channels
from chat_svc.store import chan_history_key, chan_seq_key, dedup_key, inbox_key, rate_key
from tests.chat_svc.chatkit import Device
from tests.waiting import wait_until

SENDER, FIRST, LAST = 11, 12, 19  # the last member's inbox is written last


async def _failed(device: Device, cmid: str) -> None:
    await wait_until(
        lambda: any(e.client_msg_id == cmid for e in device.send_errors),
        what=f"send_error for {cmid}",
    )


@pytest.mark.parametrize("fault", ["last_inbox_wrong_type", "history_ahead_of_seq"])
async def test_redis_fault_part_way_leaves_no_partial_message_and_retry_stores_one(
    chat_cluster, devices, redis, fault
) -> None:
    (app,) = await chat_cluster(1)
    channels = Channels(app.store, app.records, app.delivery.ids, 500)
    group = (await channels.create_group(SENDER, "g", [FIRST, LAST])).channel_id
    sender = await devices(SENDER, app.address)
    if fault == "last_inbox_wrong_type":
        broken, repair = inbox_key(LAST), inbox_key(LAST)
        await redis.set(broken, "not a stream")
    else:  # a history entry the counter has not reached: XADD <seq>-0 would be refused
        broken, repair = chan_history_key(group), chan_history_key(group)
        await redis.xadd(broken, {"x": "1"}, id="1-0")

    cmid = sender.send(group, "all or nothing", client_msg_id="once")
    await _failed(sender, cmid)
    assert not sender.acks
    # nothing of the message was written: no seq, history, inbox entry, dedup record, token
    assert await redis.get(chan_seq_key(group)) is None
    assert await redis.exists(dedup_key(SENDER, cmid)) == 0
    assert await redis.exists(rate_key(SENDER)) == 0
    for uid in (SENDER, FIRST):
        assert await redis.xlen(inbox_key(uid)) == 0, uid
    if fault != "history_ahead_of_seq":
        assert await redis.xlen(chan_history_key(group)) == 0

    await redis.delete(repair)
    sender.send(group, "all or nothing", client_msg_id="once")  # the retry
    await wait_until(lambda: sender.acks, what="the retry's ack")
    first = sender.acks[0]
    assert not first.duplicate and first.seq == 1
    sender.send(group, "all or nothing", client_msg_id="once")
    await wait_until(lambda: len(sender.acks) == 2, what="the second retry's ack")
    again = sender.acks[1]
    assert again.duplicate and again.message_id == first.message_id
    for uid in (SENDER, FIRST, LAST):
        entries = await app.store.read_inbox(uid, "0-0", 10)
        assert [(m.text, m.seq) for m in entries] == [("all or nothing", 1)], uid
    history = await app.store.history(group, None, 10)
    assert [m.message_id for m in history] == [first.message_id]

"""Delivery: 1:1 across servers, groups, idempotent sends, offline notifications."""

from __future__ import annotations

import functools
from collections import Counter

import grpc

from chat_svc.keys import chan_history_key
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_runtime.notify_queue import QUEUE_KEY
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import (
    OpenDevice,
    StartCluster,
    alice_and_bob,
    auth,
    open_direct,
    owner_of,
    users_on,
)
from tests.metrics import value
from tests.redis_reads import Entry, stream_entries
from tests.waiting import eventually, wait_until


async def test_direct_message_between_users_on_different_servers_arrives_once(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    alice, bob, channel = await alice_and_bob(apps)
    assert channel == await open_direct(apps[1].address, bob, alice)  # either side, server
    a = await devices(alice, owner_of(apps, alice).address)
    b = await devices(bob, owner_of(apps, bob).address)
    metrics = owner_of(apps, bob).host.metrics_url
    timed = await value(metrics, "feedchat_chat_delivery_seconds_count")
    ack = await a.sent(a.send(channel, "hello bob"))
    assert ack.seq == 1 and ack.message_id > 0 and not ack.duplicate
    await wait_until(lambda: b.texts() == ["hello bob"], what="bob's message")
    # live pushes are timed (creation -> device queue) on the recipients' servers
    assert await value(metrics, "feedchat_chat_delivery_seconds_count") >= timed + 1
    # the sender's own devices see it in their inbox too (multi-device sync)
    await wait_until(lambda: a.texts() == ["hello bob"], what="alice's copy")
    b.ack()
    await wait_until(
        lambda: any(r.kind == chat_pb2.RECEIPT_KIND_DELIVERED for r in a.receipts),
        what="delivered receipt",
    )
    receipt = a.receipts[0]
    assert (receipt.user_id, receipt.message_id) == (bob, ack.message_id)
    assert b.messages[0].message_id == ack.message_id
    assert len(b.messages) == 1


async def test_group_message_reaches_every_member_once(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(3)
    members = [
        *users_on(apps, "chat-0", 2),
        *users_on(apps, "chat-1", 2),
        *users_on(apps, "chat-2", 2),
    ]
    owner = members[0]
    async with grpc.aio.insecure_channel(apps[0].address) as ch:
        stub = chat_pb2_grpc.ChatServiceStub(ch)
        group = (
            await stub.CreateGroup(
                chat_pb2.CreateGroupRequest(name="team", member_ids=members[1:]),
                metadata=auth(owner),
            )
        ).channel
    assert list(group.member_ids) == sorted(members)
    devs = [await devices(uid, owner_of(apps, uid).address) for uid in members]
    sender = devs[3]
    for i in range(5):
        await sender.sent(sender.send(group.channel_id, f"m{i}"))
    expected = [f"m{i}" for i in range(5)]
    for dev in devs:
        await wait_until(functools.partial(dev.got, 5), what=f"user {dev.user_id}")
    for dev in devs:
        assert dev.texts() == expected
        assert [m.seq for m in dev.messages] == [1, 2, 3, 4, 5]


async def test_retried_send_with_same_client_msg_id_yields_one_message(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    apps = await chat_cluster(2)
    alice, bob, channel = await alice_and_bob(apps)
    a = await devices(alice, apps[0].address)
    b = await devices(bob, apps[1].address)
    first = await a.sent(a.send(channel, "once", client_msg_id="c-1"))
    a.send(channel, "once", client_msg_id="c-1")
    await wait_until(lambda: len(a.acks) == 2, what="second ack")
    second = a.acks[1]
    assert second.duplicate and (second.message_id, second.seq) == (first.message_id, first.seq)
    # a retry through another chat server (after a reconnect elsewhere) finds the same record
    other = await apps[1].delivery.send(alice, "c-1", channel, "once")
    assert other.duplicate and other.message.message_id == first.message_id
    # same id, different content: refused
    a.send(channel, "changed", client_msg_id="c-1")
    await wait_until(lambda: len(a.send_errors) == 1, what="conflict")
    assert a.send_errors[0].code == "ALREADY_EXISTS"
    assert a.send_errors[0].reason == "CLIENT_MSG_ID_REUSED"
    await a.sent(a.send(channel, "after"))
    await wait_until(lambda: b.texts() == ["once", "after"], what="bob's two messages")
    assert Counter(m.message_id for m in b.messages)[first.message_id] == 1
    assert await redis.xlen(chan_history_key(channel)) == 2


async def test_offline_recipient_is_queued_for_notification(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    apps = await chat_cluster(2)
    alice, bob, channel = await alice_and_bob(apps)
    a = await devices(alice, apps[0].address)
    ack = await a.sent(a.send(channel, "x" * 200))
    entries: list[Entry] = []

    async def queued() -> bool:
        entries[:] = await stream_entries(redis, QUEUE_KEY)
        return bool(entries)

    await eventually(queued, what="notification")
    assert len(entries) == 1
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields == {
        "kind": "chat_message",
        "user_id": str(bob),
        "channel_id": str(channel),
        "message_id": str(ack.message_id),
        "sender_id": str(alice),
        "preview": "x" * 140,
        "created_ms": fields["created_ms"],
    }
    # bob's inbox holds it anyway: he gets it when he connects
    b = await devices(bob, apps[1].address)
    assert b.texts() == ["x" * 200]

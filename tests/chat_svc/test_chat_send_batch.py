"""Fewer frames per message: a device may send several messages in one ``send_batch``
frame (answered together), may ask not to get its own sends echoed back
(``Hello.omit_own_echo``), and the acks of many devices share one Redis round trip."""

from __future__ import annotations

import grpc

from chat_svc.sessions import MAX_SEND_BATCH
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.errors import error_details
from tests.chat_svc.chatkit import (
    OpenDevice,
    StartCluster,
    auth,
    direct_pair,
    open_direct,
    users_on,
)
from tests.waiting import wait_until


async def test_sending_device_gets_acks_not_its_own_messages_other_devices_get_them(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps, alice, bob, channel = await direct_pair(chat_cluster)
    phone = await devices(alice, apps[0].address, device_id="phone", omit_own_echo=True)
    tablet = await devices(alice, apps[0].address, device_id="tablet")
    b = await devices(bob, apps[1].address)
    cmids = [phone.send(channel, f"m{i}", client_msg_id=f"own-{i}") for i in range(3)]
    await wait_until(lambda: b.got(3) and tablet.got(3), what="the messages elsewhere")
    assert sorted(ack.client_msg_id for ack in phone.acks) == sorted(cmids)
    assert b.texts() == tablet.texts() == ["m0", "m1", "m2"]
    b.send(channel, "reply")
    await wait_until(lambda: phone.got(1), what="bob's reply on the phone")
    assert phone.texts() == ["reply"]  # its own three entries were passed, not re-read
    # the phone acks bob's entry (after its own): accepted, and saved as its cursor
    phone.ack()
    await wait_until(lambda: bool(b.receipts), what="the DELIVERED receipt at bob")
    assert (b.receipts[0].user_id, b.receipts[0].device_id) == (alice, "phone")
    again = await devices(alice, apps[0].address, device_id="phone")
    assert again.texts() == []  # resumed after bob's reply: nothing is owed
    # a replay sends the inbox as it is, own messages included
    replay = await devices(alice, apps[0].address, device_id="phone", cursor="0-0")
    assert replay.texts() == ["m0", "m1", "m2", "reply"]


async def test_send_batch_stores_each_send_in_order_and_answers_them_together(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps, alice, bob, channel = await direct_pair(chat_cluster)
    a = await devices(alice, apps[0].address, batch=True, omit_own_echo=True)
    b = await devices(bob, apps[1].address)
    texts = ["one", "two", "", "three", "two"]  # an empty text is refused on its own
    a.send_batch(channel, [(f"b{i}", text) for i, text in enumerate(texts)])
    await wait_until(lambda: len(a.acks) + len(a.send_errors) == 5, what="five replies")
    assert a.batch_sizes == [5]  # the replies came as one batch frame, in send order
    replies = a.frames[-5:]
    assert [r.WhichOneof("frame") for r in replies] == [
        "send_ack",
        "send_ack",
        "send_error",
        "send_ack",
        "send_ack",
    ]
    assert replies[2].send_error.reason == "MESSAGE_EMPTY"
    seqs = [r.send_ack.seq for r in replies if r.WhichOneof("frame") == "send_ack"]
    assert seqs == [1, 2, 3, 4]
    await wait_until(lambda: b.got(4), what="the batch at bob")
    assert b.texts() == ["one", "two", "three", "two"]
    assert not a.messages  # its own copies were not echoed back

    # a batch that repeats a client_msg_id (a retry) stores that message once
    a.send_batch(channel, [("again", "again"), ("again", "again")])
    await wait_until(lambda: len(a.acks) == 6, what="the repeated send's two acks")
    first, second = a.acks[-2:]
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.message_id == second.message_id and first.seq == 5
    await wait_until(lambda: b.got(5), what="the repeated send at bob")
    assert b.texts()[-1] == "again"


async def test_send_batch_outside_its_bounds_fails_the_stream_invalid_argument(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps, alice, _, channel = await direct_pair(chat_cluster)
    for count in (0, MAX_SEND_BATCH + 1):
        a = await devices(alice, apps[0].address)
        a.send_batch(channel, [(f"bound-{count}-{i}", "x") for i in range(count)])
        await wait_until(a.has_ended, what="the stream's end")
        assert a.error is not None and a.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await error_details(a.error)).reason == "SEND_BATCH_SIZE"
        assert not a.acks


async def test_acks_of_many_devices_at_once_each_save_a_cursor_and_send_receipts(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, send_rate=1000.0, send_burst=1000)
    sender = users_on(apps, "chat-0", 1)[0]
    readers = users_on(apps, "chat-1", 6)
    s = await devices(sender, apps[0].address, omit_own_echo=True)
    channels = [await open_direct(apps[0].address, sender, r) for r in readers]
    inboxes = [await devices(r, apps[1].address) for r in readers]
    for i, channel in enumerate(channels):
        s.send(channel, f"to {i}", client_msg_id=f"fan-{i}")
    await wait_until(lambda: all(d.got(1) for d in inboxes), what="every reader's message")
    for d in inboxes:  # all acks in the same tick: one Redis round trip between them
        d.ack()
    await wait_until(lambda: len(s.receipts) == len(readers), what="a receipt per reader")
    assert sorted(r.user_id for r in s.receipts) == sorted(readers)
    assert all(r.kind == chat_pb2.RECEIPT_KIND_DELIVERED for r in s.receipts)
    for r in readers:  # each device's cursor was saved: a new stream replays nothing
        resumed = await devices(r, apps[1].address)
        assert resumed.texts() == []


async def test_send_ack_carries_what_the_echo_would_have_added_to_the_send(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    """Without its echo the sender still knows the whole message: the ack adds the stored
    message's creation time and the seq of the message it replies to or acts on."""
    apps, alice, bob, channel = await direct_pair(chat_cluster)
    phone = await devices(alice, apps[0].address, device_id="phone", omit_own_echo=True)
    tablet = await devices(alice, apps[0].address, device_id="tablet")
    first = await phone.sent(phone.send(channel, "first"))
    # a retry's duplicate ack names the original, creation time included
    phone.send(channel, "first", client_msg_id=first.client_msg_id)
    await wait_until(lambda: len(phone.acks) == 2, what="the retry's ack")
    again = phone.acks[1]
    assert again.duplicate
    assert (again.message_id, again.created_ms) == (first.message_id, first.created_ms)
    cmids = [
        phone.reply(channel, "a reply", first.message_id),
        phone.edit(channel, first.message_id, "first, edited"),
        phone.react(channel, first.message_id, "👍"),
        phone.delete(channel, first.message_id),
    ]
    acks = [first] + [await phone.sent(cmid) for cmid in cmids]
    await wait_until(lambda: tablet.got(5), what="the five at the other device")
    echoes = {m.client_msg_id: m for m in tablet.messages}
    for ack in acks:
        echo = echoes[ack.client_msg_id]
        assert (ack.message_id, ack.seq, ack.created_ms) == (
            echo.message_id,
            echo.seq,
            echo.created_ms,
        )
        target_seq = echo.event.target_seq if echo.HasField("event") else echo.reply_to_seq
        assert ack.target_seq == target_seq
    assert [ack.target_seq for ack in acks] == [0, 1, 1, 1, 1]
    assert not phone.messages
    # the unary SendMessage answers with the same ack
    async with grpc.aio.insecure_channel(apps[1].address) as rpc:
        reply = await chat_pb2_grpc.ChatServiceStub(rpc).SendMessage(
            chat_pb2.SendMessageRequest(
                client_msg_id="unary",
                channel_id=channel,
                text="by rpc",
                reply_to=acks[1].message_id,
            ),
            metadata=auth(bob),
        )
    await wait_until(lambda: tablet.got(6), what="the unary send at the other device")
    assert reply.ack.target_seq == acks[1].seq
    assert reply.ack.created_ms == tablet.messages[-1].created_ms

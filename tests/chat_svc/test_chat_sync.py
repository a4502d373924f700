"""Sync: resume from a cursor, multi-device cursors, catch-up racing live pushes."""

from __future__ import annotations

import asyncio
import functools
import time

import grpc
import pytest

from chat_svc.app import ChatApp
from chat_svc.groups import Channels
from chat_svc.model import parse_cursor
from feedchat_client.errors import error_details
from tests.chat_svc.chatkit import OpenDevice, StartCluster, alice_and_bob, users_on
from tests.waiting import eventually, wait_until


async def test_device_resumes_after_its_cursor_in_order(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    alice, bob, channel = await alice_and_bob(apps)
    a = await devices(alice, apps[0].address)
    phone = await devices(bob, apps[1].address, device_id="phone")
    for i in range(3):
        await a.sent(a.send(channel, f"m{i}"))
    await wait_until(lambda: len(phone.messages) == 3, what="phone live")
    phone.ack()
    cursor = phone.cursor
    await phone.close()
    for i in range(3, 6):
        await a.sent(a.send(channel, f"m{i}"))
    # the phone resumes after its cursor; the laptop (new device) gets the whole inbox
    phone2 = await devices(bob, apps[1].address, device_id="phone", cursor=cursor)
    laptop = await devices(bob, apps[1].address, device_id="laptop")
    assert phone2.texts() == ["m3", "m4", "m5"]
    assert laptop.texts() == [f"m{i}" for i in range(6)]
    cursors = [parse_cursor(m.inbox_cursor) for m in laptop.messages]
    assert cursors == sorted(cursors) and len(set(cursors)) == 6
    # an empty hello cursor resumes from the cursor this device last acked
    phone2.ack()
    await _until_cursor_saved(apps[0], bob, "phone", phone2.cursor)
    await phone2.close()
    await a.sent(a.send(channel, "m6"))
    phone3 = await devices(bob, apps[1].address, device_id="phone")
    assert phone3.texts() == ["m6"]


async def test_catch_up_and_live_pushes_give_each_message_once_in_order(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, send_rate=1000.0, send_burst=1000)
    alice, bob, channel = await alice_and_bob(apps)
    a = await devices(alice, apps[0].address)
    total = 120

    async def sender() -> None:
        for i in range(total):
            a.send(channel, f"m{i}", client_msg_id=f"race-{i}")
            if i % 10 == 0:
                await asyncio.sleep(0.005)

    task = asyncio.create_task(sender())
    # connect devices while messages are being stored and pushed
    late = []
    for n in range(4):
        await asyncio.sleep(0.01)
        late.append(await devices(bob, apps[1].address, device_id=f"d{n}", cursor="0-0"))
    await task
    await wait_until(lambda: len(a.acks) == total, 10, "every ack")
    assert a.send_errors == []
    expected = [f"m{i}" for i in range(total)]
    for dev in late:
        await wait_until(functools.partial(dev.got, total), 10, f"device {dev.device_id}")
        assert dev.texts() == expected


async def _direct(apps: list[ChatApp], user: int, peer: int) -> int:
    channels = Channels(apps[0].store, apps[0].records, apps[0].delivery.ids, 500)
    return (await channels.open_direct(user, peer)).channel_id


async def _until_cursor_saved(app: ChatApp, user: int, device: str, cursor: str) -> None:
    async def saved() -> bool:
        return await app.store.device_cursor(user, device) == cursor

    await eventually(saved, what="saved device cursor")


async def test_pushes_arriving_out_of_order_are_delivered_in_inbox_order(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(1)
    app = apps[0]
    channel = await _direct(apps, 1, 2)
    bob = await devices(2, app.address)
    entries = []
    for i in range(4):  # store without pushing, then push the first three in reverse order
        out = await app.store.store_message(
            sender_id=1,
            channel_id=channel,
            message_id=app.delivery.ids.next_id(),
            client_msg_id=f"o{i}",
            text=f"m{i}",
            created_ms=1,
            rate=100.0,
            burst=100,
        )
        appended = await app.store.fan_out(out.message, out.recipients)
        entries.append(next(e for e in appended.entries if e.user_id == 2))
    for entry in reversed(entries[:3]):
        app.hub.deliver(2, entry)
    app.hub.deliver(2, entries[3])  # the queue is FIFO: once m3 is in, all earlier pushes are
    await wait_until(lambda: "m3" in bob.texts(), what="the last message")
    assert bob.texts() == ["m0", "m1", "m2", "m3"]
    assert [m.inbox_cursor for m in bob.messages] == [e.message.inbox_cursor for e in entries]


async def test_hello_cursor_that_is_no_stream_id_is_bad_cursor(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(1)
    user = users_on(apps, "chat-0", 1)[0]
    top = (1 << 64) - 1  # Redis's largest stream id part; nothing follows the top id
    ahead = f"{int(time.time() * 1000) + 3_600_000}-0"  # an hour ahead of any inbox entry
    for n, cursor in enumerate(["nope", f"{top + 1}-0", f"{top}-{top}", "\u0663-0", ahead]):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await devices(user, apps[0].address, device_id=f"d{n}", cursor=cursor)
        details = await error_details(err.value)
        assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_CURSOR"), (
            cursor
        )

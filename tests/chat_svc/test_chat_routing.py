"""Ownership by the ring: redirects, rebalancing on join, slow consumers, peer auth."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from chat_svc.app import build
from chat_svc.config import ChatConfig
from chat_svc.groups import Channels
from chat_svc.model import Reconnect
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.errors import error_details
from feedchat_runtime.errors import FeedchatError
from feedchat_runtime.registry import Member
from feedchat_runtime.ring import Ring
from tests.chat_svc.chatkit import (
    Device,
    OpenDevice,
    StartCluster,
    auth,
    open_direct,
    owner_instance,
    slow_ring_watch,
    token,
    users_on,
)
from tests.waiting import wait_until


async def test_connect_to_non_owner_fails_with_owner_address(chat_cluster: StartCluster) -> None:
    apps = await chat_cluster(2)
    user = users_on(apps, "chat-1", 1)[0]
    device = Device(user, apps[0].address)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await device.open()
    await device.close()
    details = await error_details(err.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "WRONG_CHAT_SERVER"
    assert details.metadata["owner_address"] == apps[1].address
    assert details.metadata["owner_instance"] == "chat-1"


async def test_peer_service_refuses_user_tokens(chat_cluster: StartCluster) -> None:
    apps = await chat_cluster(1)
    async with grpc.aio.insecure_channel(apps[0].address) as channel:
        stub = chat_pb2_grpc.ChatPeerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Deliver(chat_pb2.DeliverRequest(), metadata=auth(1))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        service = apps[0].host.authority.issue_service("chat").token
        reply = await stub.Deliver(
            chat_pb2.DeliverRequest(), metadata=(("authorization", f"Bearer {service}"),)
        )
        assert list(reply.offline_user_ids) == []


async def test_new_chat_server_moves_users_who_reconnect_without_loss(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, send_rate=1000.0, send_burst=1000)
    # owners depend on instance names only, so the 3-server ring is known in advance
    future = Ring.build(
        {**apps[0].ring.ring.members, "chat-2": Member("chat", "chat-2", "unknown:0")}
    )
    sender = next(u for u in users_on(apps, "chat-0", 50) if owner_instance(future, u) == "chat-0")
    receivers = users_on(apps, "chat-1", 12, start=1000)
    channels = Channels(apps[0].store, apps[0].records, apps[0].delivery.ids, 500)
    group = (await channels.create_group(sender, "all", receivers)).channel_id
    s = await devices(sender, apps[0].address)
    streams = {uid: [await devices(uid, apps[1].address)] for uid in receivers}
    total = 60

    async def send_all() -> None:
        for i in range(total):
            s.send(group, f"m{i}", client_msg_id=f"j{i}")
            await asyncio.sleep(0.004)

    sending = asyncio.create_task(send_all())
    await wait_until(lambda: len(s.acks) >= 5, what="the conversation to start")
    apps = await chat_cluster(1)  # chat-2 joins mid-conversation
    moved = [uid for uid in receivers if owner_instance(apps[0].ring.ring, uid) == "chat-2"]
    assert moved, "the new server should take over some users"
    for uid in moved:
        old = streams[uid][-1]
        await wait_until(old.has_ended, what=f"user {uid} moved")
        assert [r.instance for r in old.reconnects] == ["chat-2"]
        target = old.reconnects[0].address
        assert target == apps[2].address
        streams[uid].append(await devices(uid, target, cursor=old.cursor))
    await sending
    await wait_until(lambda: len(s.acks) == total, 10, "every ack")
    expected = [f"m{i}" for i in range(total)]
    for uid, opened in streams.items():
        await wait_until(functools.partial(_all_got, opened, total), 10, f"user {uid}")
        got = [m.text for d in opened for m in d.messages]
        assert got == expected, uid


def _all_got(devices: list[Device], count: int) -> bool:
    """Whether ``count`` messages have arrived over the devices together."""
    return sum(len(d.messages) for d in devices) >= count


SLOW_CLIENT = """
import asyncio, sys, grpc
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc

async def main():
    async with grpc.aio.insecure_channel(sys.argv[1]) as channel:
        hello = chat_pb2.ConnectRequest(hello=chat_pb2.Hello(device_id="slow"))
        call = chat_pb2_grpc.ChatServiceStub(channel).Connect(
            iter([hello]), metadata=(("authorization", "Bearer " + sys.argv[2]),))
        try:
            async for frame in call:
                pass
        except grpc.aio.AioRpcError as exc:
            print(exc.code().name, exc.details(), flush=True)

asyncio.run(main())
"""


async def test_slow_consumer_is_cut_off_while_others_keep_receiving(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(
        1, outbound_queue=8, send_rate=10_000.0, send_burst=10_000, max_message_chars=60_000
    )
    sender, fast, slow = 1, 2, 3
    channels = Channels(apps[0].store, apps[0].records, apps[0].delivery.ids, 500)
    group = (await channels.create_group(sender, "g", [fast, slow])).channel_id
    s = await devices(sender, apps[0].address)
    f = await devices(fast, apps[0].address)
    # The slow device is a process we freeze: once the socket buffers between us are
    # full, the server cannot write to it and its outbound queue fills.
    argv = [sys.executable, "-c", SLOW_CLIENT, apps[0].address, token(slow)]
    proc = subprocess.Popen(  # noqa: ASYNC220 - a plain child, waited on in a thread
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        await wait_until(lambda: bool(apps[0].hub.devices(slow)), 20, "slow device registered")
        [stream] = apps[0].hub.devices(slow)
        os.kill(proc.pid, signal.SIGSTOP)
        text = "y" * 60_000
        total = 400
        for i in range(total):
            s.send(group, text, client_msg_id=f"s{i}")
            if i % 20 == 0:
                await asyncio.sleep(0.01)
        await wait_until(lambda: not apps[0].hub.devices(slow), 30, "slow device cut off")
        await wait_until(lambda: len(f.messages) == total, 30, "fast device gets everything")
        assert f.error is None and not f.ended
        assert isinstance(stream.terminal, FeedchatError), stream.terminal
        assert stream.terminal.reason == "SLOW_CONSUMER"
        assert stream.terminal.code == "RESOURCE_EXHAUSTED"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    # The status reaches a client that drains its window in time; a frozen one finds its
    # stream reset once it wakes. Either way its stream is over and it resyncs.
    assert out.decode().split(" ")[0] in ("RESOURCE_EXHAUSTED", "UNAVAILABLE"), out


async def test_draining_server_sends_its_users_to_their_next_owner(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    user = users_on(apps, "chat-1", 1)[0]
    device = await devices(user, apps[1].address)
    await apps[1].stop()  # SIGTERM path: deregister, then drain every stream
    await wait_until(lambda: device.ended, 10, "stream ended by the drain")
    assert device.error is None
    assert [(r.instance, r.address) for r in device.reconnects] == [("chat-0", apps[0].address)]
    await apps[0].ring.wait_for(lambda r: set(r.members) == {"chat-0"}, 10)
    again = await devices(user, apps[0].address, cursor=device.cursor)
    assert again.synced


async def test_moved_stream_sends_every_ack_of_what_it_stored_before_reconnect(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2, send_rate=100_000.0, send_burst=100_000)
    user = users_on(apps, "chat-0", 1)[0]
    channels = Channels(apps[0].store, apps[0].records, apps[0].delivery.ids, 500)
    channel = (await channels.open_direct(user, user + 1)).channel_id
    device = await devices(user, apps[0].address)
    total = 400
    for i in range(total):
        device.send(channel, f"m{i}", client_msg_id=f"m{i}")
    await wait_until(lambda: len(device.acks) >= 10, what="the burst to be under way")
    apps[0].hub.close_users({user: Reconnect(apps[1].address, "chat-1", 1)})  # moved mid-burst
    await wait_until(lambda: device.ended, what="the move")
    # (the client may see its own late writes fail once the server ended the call; the
    # frames it read are what counts)
    assert device.frames[-1].WhichOneof("frame") == "reconnect"
    history = await apps[0].store.history(channel, None, total + 1)
    stored = {m.client_msg_id for m in history}
    acked = {a.client_msg_id for a in device.acks}
    assert len(stored) < total, "the move should interrupt the burst"
    assert acked == stored  # nothing stored without its ack reaching the device


async def test_message_routed_by_a_lagging_ring_still_reaches_the_device_on_its_new_owner(
    chat_cluster: StartCluster, devices: OpenDevice, make_config: Callable[..., Any]
) -> None:
    apps = await chat_cluster(2)
    future = Ring.build(
        {**apps[0].ring.ring.members, "chat-2": Member("chat", "chat-2", "unknown:0")}
    )
    sender = next(u for u in users_on(apps, "chat-0", 50) if owner_instance(future, u) == "chat-0")
    mover = next(u for u in users_on(apps, "chat-1", 200) if owner_instance(future, u) == "chat-2")
    channel = await open_direct(apps[0].address, sender, mover)
    s = await devices(sender, apps[0].address)
    slow_ring_watch(apps[0], 3.0)  # chat-0 (the sender's server) learns of chat-2 late
    joiner = await build(make_config(ChatConfig, instance="chat-2"))
    await joiner.start()
    try:
        for app in (apps[1], joiner):
            await app.ring.wait_for(lambda r: "chat-2" in r.members, 10)
        m = await devices(mover, joiner.address)  # synced on its new owner
        assert "chat-2" not in apps[0].ring.ring.members, "chat-0's ring should still lag"
        await s.sent(s.send(channel, "routed by an old ring"))  # pushed to chat-1: no device
        await wait_until(
            lambda: m.texts() == ["routed by an old ring"],
            10,
            "the re-push once chat-0's ring moved on",
        )
        assert "chat-2" in apps[0].ring.ring.members
    finally:
        await joiner.stop()

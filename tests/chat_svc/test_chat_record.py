"""Channels and membership are recorded in PostgreSQL: a wiped Redis and restarted chat
servers keep every group and member, and sends still check membership (the cached member
set is refilled from the record)."""

from __future__ import annotations

import functools

import grpc

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_runtime.redis_client import RedisClient
from tests.chat_svc.chatkit import Device, OpenDevice, StartCluster, auth, users_on
from tests.waiting import wait_until


async def test_groups_and_membership_survive_a_wiped_redis_and_restart(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    apps = await chat_cluster(1)
    owner, member, removed, outsider = users_on(apps, "chat-0", 4)
    async with grpc.aio.insecure_channel(apps[0].address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        group = (
            await stub.CreateGroup(
                chat_pb2.CreateGroupRequest(name="kept", member_ids=[member, removed]),
                metadata=auth(owner),
            )
        ).channel
        await stub.RemoveMembers(
            chat_pb2.RemoveMembersRequest(channel_id=group.channel_id, user_ids=[removed]),
            metadata=auth(owner),
        )
    await apps[0].stop()
    await redis.flushall()

    app = (await chat_cluster(1))[-1]
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        listed = await stub.ListChannels(chat_pb2.ListChannelsRequest(), metadata=auth(owner))
        assert [(c.channel_id, c.name, c.member_count) for c in listed.channels] == [
            (group.channel_id, "kept", 2)
        ]
        m = await devices(member, app.address)
        await m.sent(m.send(group.channel_id, "still here"))
        for user in (removed, outsider):
            d = await devices(user, app.address)
            d.send(group.channel_id, "let me in")
            await wait_until(functools.partial(_refused, d), what="refusal")
            assert d.send_errors[0].reason == "NOT_A_MEMBER"
        history = await stub.GetHistory(
            chat_pb2.GetHistoryRequest(channel_id=group.channel_id), metadata=auth(owner)
        )
        assert [msg.text for msg in history.messages] == ["still here"]


async def test_a_send_refills_a_lost_member_cache_and_a_direct_channel_reopens(
    chat_cluster: StartCluster, devices: OpenDevice, redis: RedisClient
) -> None:
    apps = await chat_cluster(1)
    owner, member = users_on(apps, "chat-0", 2)
    async with grpc.aio.insecure_channel(apps[0].address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        direct = (
            await stub.OpenDirectChannel(
                chat_pb2.OpenDirectChannelRequest(peer_user_id=member), metadata=auth(owner)
            )
        ).channel
        await redis.flushall()
        o = await devices(owner, apps[0].address)
        await o.sent(o.send(direct.channel_id, "hi"))
        reopened = (
            await stub.OpenDirectChannel(
                chat_pb2.OpenDirectChannelRequest(peer_user_id=owner), metadata=auth(member)
            )
        ).channel
        assert reopened.channel_id == direct.channel_id
        assert reopened.member_count == 2


def _refused(device: Device) -> bool:
    return len(device.send_errors) == 1

"""Groups and limits: membership on send and history, member limit, paging, rate, length."""

from __future__ import annotations

import grpc
import pytest

from chat_svc.servicer import GET_HISTORY
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.errors import error_details
from feedchat_runtime.pages import PageTokens, derive_key
from tests.chat_svc.chatkit import OpenDevice, StartCluster, auth, users_on
from tests.waiting import wait_until


async def _stub(address: str) -> tuple[grpc.aio.Channel, chat_pb2_grpc.ChatServiceStub]:
    channel = grpc.aio.insecure_channel(address)
    return channel, chat_pb2_grpc.ChatServiceStub(channel)


async def test_non_member_can_neither_send_to_nor_read_a_group(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(2)
    owner, member = users_on(apps, "chat-0", 2)
    outsider = users_on(apps, "chat-1", 1)[0]
    channel, stub = await _stub(apps[0].address)
    async with channel:
        group = (
            await stub.CreateGroup(
                chat_pb2.CreateGroupRequest(name="g", member_ids=[member]), metadata=auth(owner)
            )
        ).channel
        o = await devices(owner, apps[0].address)
        await o.sent(o.send(group.channel_id, "secret"))
        x = await devices(outsider, apps[1].address)
        x.send(group.channel_id, "let me in")
        await wait_until(lambda: len(x.send_errors) == 1, what="refusal")
        assert (x.send_errors[0].code, x.send_errors[0].reason) == (
            "PERMISSION_DENIED",
            "NOT_A_MEMBER",
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetHistory(
                chat_pb2.GetHistoryRequest(channel_id=group.channel_id), metadata=auth(outsider)
            )
        details = await error_details(err.value)
        assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_MEMBER")
        # a member removed by the owner loses access too
        await stub.RemoveMembers(
            chat_pb2.RemoveMembersRequest(channel_id=group.channel_id, user_ids=[member]),
            metadata=auth(owner),
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetHistory(
                chat_pb2.GetHistoryRequest(channel_id=group.channel_id), metadata=auth(member)
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        history = await stub.GetHistory(
            chat_pb2.GetHistoryRequest(channel_id=group.channel_id), metadata=auth(owner)
        )
        assert [m.text for m in history.messages] == ["secret"]


async def test_group_member_limit_is_enforced(chat_cluster: StartCluster) -> None:
    apps = await chat_cluster(1, max_group_members=3)
    channel, stub = await _stub(apps[0].address)
    async with channel:
        group = (
            await stub.CreateGroup(
                chat_pb2.CreateGroupRequest(name="small", member_ids=[2, 3]), metadata=auth(1)
            )
        ).channel
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AddMembers(
                chat_pb2.AddMembersRequest(channel_id=group.channel_id, user_ids=[4]),
                metadata=auth(2),
            )
        details = await error_details(err.value)
        assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "GROUP_FULL")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateGroup(
                chat_pb2.CreateGroupRequest(name="big", member_ids=[2, 3, 4]), metadata=auth(1)
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # only the owner removes others; anyone may leave
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RemoveMembers(
                chat_pb2.RemoveMembersRequest(channel_id=group.channel_id, user_ids=[3]),
                metadata=auth(2),
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        left = (
            await stub.RemoveMembers(
                chat_pb2.RemoveMembersRequest(channel_id=group.channel_id, user_ids=[2]),
                metadata=auth(2),
            )
        ).channel
        assert list(left.member_ids) == [1, 3]
        grown = (
            await stub.AddMembers(
                chat_pb2.AddMembersRequest(channel_id=group.channel_id, user_ids=[4]),
                metadata=auth(3),
            )
        ).channel
        assert list(grown.member_ids) == [1, 3, 4]


async def test_history_pages_backwards_and_channels_list_pages(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(1, send_rate=1000.0, send_burst=1000)
    channel, stub = await _stub(apps[0].address)
    async with channel:
        groups = []
        for n in range(3):
            groups.append(
                (
                    await stub.CreateGroup(
                        chat_pb2.CreateGroupRequest(name=f"g{n}", member_ids=[7]), metadata=auth(5)
                    )
                ).channel.channel_id
            )
        dev = await devices(5, apps[0].address)
        for i in range(7):
            await dev.sent(dev.send(groups[0], f"m{i}"))
        seen, tokens, token = [], [], ""
        while True:
            page = await stub.GetHistory(
                chat_pb2.GetHistoryRequest(channel_id=groups[0], page_size=3, page_token=token),
                metadata=auth(7),
            )
            seen.append([m.seq for m in page.messages])
            token = page.next_page_token
            if not token:
                break
            tokens.append(token)
        assert seen == [[7, 6, 5], [4, 3, 2], [1]]
        forged = PageTokens(derive_key("", "not our key")).issue(GET_HISTORY, 7, 5, scope=groups[1])
        for caller, bad in [
            (7, tokens[0]),
            (7, "bm9wZQ=="),
            (7, forged),  # other channel's,
            (5, tokens[0]),
        ]:  # garbage, forged; another member's (of groups[0])
            channel = groups[0] if caller == 5 else groups[1]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetHistory(
                    chat_pb2.GetHistoryRequest(channel_id=channel, page_token=bad),
                    metadata=auth(caller),
                )
            details = await error_details(err.value)
            assert (details.code, details.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "PAGE_TOKEN_INVALID",
            ), bad
        listed, token = [], ""
        while True:
            page = await stub.ListChannels(
                chat_pb2.ListChannelsRequest(page_size=2, page_token=token), metadata=auth(7)
            )
            listed += [c.channel_id for c in page.channels]
            token = page.next_page_token
            if not token:
                break
        assert listed == sorted(groups)


async def test_limits_on_length_and_send_rate(
    chat_cluster: StartCluster, devices: OpenDevice
) -> None:
    apps = await chat_cluster(1, max_message_chars=10, send_rate=1.0, send_burst=3)
    channel, stub = await _stub(apps[0].address)
    async with channel:
        group = (
            await stub.CreateGroup(
                chat_pb2.CreateGroupRequest(name="g", member_ids=[2]), metadata=auth(1)
            )
        ).channel.channel_id
    dev = await devices(1, apps[0].address)
    dev.send(group, "x" * 11, client_msg_id="long")
    await wait_until(lambda: len(dev.send_errors) == 1, what="too long")
    assert (dev.send_errors[0].code, dev.send_errors[0].reason) == (
        "INVALID_ARGUMENT",
        "MESSAGE_TOO_LONG",
    )
    for i in range(4):
        dev.send(group, f"r{i}", client_msg_id=f"r{i}")
    await wait_until(lambda: len(dev.acks) + len(dev.send_errors) == 5, what="four answers")
    assert len(dev.acks) == 3
    limited = dev.send_errors[1]
    assert (limited.code, limited.reason, limited.client_msg_id) == (
        "RESOURCE_EXHAUSTED",
        "RATE_LIMITED",
        "r3",
    )
    assert 0 < limited.retry_after.ToTimedelta().total_seconds() <= 1.0

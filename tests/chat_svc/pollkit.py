"""Test helpers for the unary chat path: SendMessage and PollInbox calls."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.chat_svc.chatkit import auth


def stub(address: str) -> tuple[grpc.aio.Channel, chat_pb2_grpc.ChatServiceStub]:
    channel = grpc.aio.insecure_channel(address)
    return channel, chat_pb2_grpc.ChatServiceStub(channel)


async def send(
    address: str, user: int, channel_id: int, text: str, cmid: str | None = None
) -> chat_pb2.SendAck:
    async with grpc.aio.insecure_channel(address) as channel:
        reply: chat_pb2.SendMessageResponse = await chat_pb2_grpc.ChatServiceStub(
            channel
        ).SendMessage(
            chat_pb2.SendMessageRequest(
                client_msg_id=cmid or f"{user}-{text}"[:64], channel_id=channel_id, text=text
            ),
            metadata=auth(user),
        )
        return reply.ack


async def poll(
    address: str,
    user: int,
    cursor: str = "",
    wait: float | None = None,
    device: str = "poller",
    **fields: Any,
) -> chat_pb2.PollInboxResponse:
    request = chat_pb2.PollInboxRequest(device_id=device, inbox_cursor=cursor, **fields)
    if wait is not None:
        request.wait.CopyFrom(duration_pb2.Duration(seconds=int(wait), nanos=int(wait % 1 * 1e9)))
    async with grpc.aio.insecure_channel(address) as channel:
        return await chat_pb2_grpc.ChatServiceStub(channel).PollInbox(  # type: ignore[no-any-return]
            request, metadata=auth(user), timeout=(wait or 30) + 10
        )

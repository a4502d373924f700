"""Pushes between chat servers over DeliverStream: answers in order, service credentials
only, and a server without the stream still reached through Deliver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from chat_svc.convert import push_pb
from chat_svc.model import InboxEntry, Push, StoredMessage
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.chat_svc.chatkit import StartCluster, auth

NOBODY = 424_242
"""A user with no device anywhere."""


def _entry(user: int, seq: int) -> Push:
    message = StoredMessage(9000 + seq, 5, seq, 1, f"m{seq}", f"c{seq}", 1_700_000_000_000)
    return Push(user, InboxEntry(user, message, "0-0"))


async def test_the_peer_stream_answers_each_request_in_order_for_services_only(
    chat_cluster: StartCluster,
) -> None:
    (app,) = await chat_cluster(1)
    service = app.host.authority.issue_service("chat").token
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = chat_pb2_grpc.ChatPeerServiceStub(channel)
        refused = stub.DeliverStream(iter([chat_pb2.DeliverStreamRequest()]), metadata=auth(1))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in refused:
                pass
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        requests = [
            chat_pb2.DeliverStreamRequest(pushes=[push_pb(_entry(NOBODY + i, i))]) for i in range(3)
        ]
        call = stub.DeliverStream(
            iter(requests), metadata=(("authorization", f"Bearer {service}"),)
        )
        replies = [list(reply.offline_user_ids) async for reply in call]
        assert replies == [[NOBODY], [NOBODY + 1], [NOBODY + 2]]


class _DeliverOnly(chat_pb2_grpc.ChatPeerServiceServicer):
    """A chat server of a version before DeliverStream (which it answers UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.delivered: list[int] = []

    async def Deliver(self, request: chat_pb2.DeliverRequest, context: Any) -> Any:
        self.delivered.extend(push.user_id for push in request.pushes)
        return chat_pb2.DeliverResponse(offline_user_ids=[p.user_id for p in request.pushes])

    async def DeliverStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[chat_pb2.DeliverStreamResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        yield chat_pb2.DeliverStreamResponse()  # never reached: abort raises


async def test_pushes_reach_a_server_without_the_stream_through_deliver(
    chat_cluster: StartCluster,
) -> None:
    (app,) = await chat_cluster(1)
    older = _DeliverOnly()
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatPeerServiceServicer_to_server(older, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        address = f"127.0.0.1:{port}"
        for seq in (1, 2):
            offline = await app.delivery.forward(address, [_entry(NOBODY, seq)])
            assert offline == [NOBODY]
        assert older.delivered == [NOBODY, NOBODY]
    finally:
        await server.stop(None)

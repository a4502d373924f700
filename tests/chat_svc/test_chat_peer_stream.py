"""Pushes between chat servers over DeliverStream: answers in order, service credentials
only, and a server without the stream still reached through Deliver."""

from __future__ import annotations

import contextlib
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


@contextlib.asynccontextmanager
async def _peer_server(servicer: chat_pb2_grpc.ChatPeerServiceServicer) -> AsyncIterator[str]:
    """A bare ChatPeerService server on loopback (another chat server's version); its
    address."""
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatPeerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


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
    async with _peer_server(older) as address:
        for seq in (1, 2):
            offline = await app.delivery.forward(address, [_entry(NOBODY, seq)])
            assert offline == [NOBODY]
    assert older.delivered == [NOBODY, NOBODY]


class _FirstStreamStalls(chat_pb2_grpc.ChatPeerServiceServicer):
    """Never answers on its first DeliverStream; answers on every later one."""

    def __init__(self) -> None:
        self.streams = 0

    async def Deliver(self, request: chat_pb2.DeliverRequest, context: Any) -> Any:
        raise AssertionError("the stream is used, not Deliver")

    async def DeliverStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[chat_pb2.DeliverStreamResponse]:
        self.streams += 1
        stalled = self.streams == 1
        async for request in request_iterator:
            if not stalled:
                offline = [p.user_id for p in request.pushes]
                yield chat_pb2.DeliverStreamResponse(offline_user_ids=offline)


async def test_a_peer_stream_that_timed_out_is_replaced_by_a_new_one(
    chat_cluster: StartCluster,
) -> None:
    (app,) = await chat_cluster(1, peer_timeout=0.3)
    peer = _FirstStreamStalls()
    async with _peer_server(peer) as address:
        with pytest.raises(TimeoutError):
            await app.delivery.forward(address, [_entry(NOBODY, 1)])
        assert await app.delivery.forward(address, [_entry(NOBODY, 2)]) == [NOBODY]
    assert peer.streams == 2

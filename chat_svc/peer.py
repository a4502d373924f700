"""ChatPeerService: forwarding pushes between chat servers (client and server side)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, TypeAlias

import grpc

from chat_svc.connections import ConnectionHub
from chat_svc.convert import push_from_pb, push_pb
from chat_svc.model import InboxEntry, Push
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_runtime.auth import require_service
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

MAX_PUSHES = 1000
RENEW_INTERVAL = 0.2
"""Seconds between two renewals of the channel to one address (a dead server would
otherwise get a fresh channel per failed call)."""
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def deliver_local(hub: ConnectionHub, pushes: Sequence[Push]) -> list[int]:
    """Hand pushes to local devices; the users of inbox entries nobody was connected for."""
    offline: list[int] = []
    for push in pushes:
        reached = hub.deliver(push.user_id, push.event)
        if reached == 0 and isinstance(push.event, InboxEntry):
            offline.append(push.user_id)
    return offline


class PeerServicer(chat_pb2_grpc.ChatPeerServiceServicer):
    """Receives pushes from other chat servers."""

    def __init__(self, hub: ConnectionHub) -> None:
        self._hub = hub

    async def Deliver(
        self, request: chat_pb2.DeliverRequest, context: Context
    ) -> chat_pb2.DeliverResponse:
        require_service()
        if len(request.pushes) > MAX_PUSHES:
            raise InvalidArgument.field("pushes", f"at most {MAX_PUSHES} per call")
        pushes = [p for p in (push_from_pb(raw) for raw in request.pushes) if p is not None]
        return chat_pb2.DeliverResponse(offline_user_ids=deliver_local(self._hub, pushes))


class PeerClient:
    """Calls ChatPeerService.Deliver on other chat servers with the service credential.

    Pushes for one address are coalesced: while a Deliver call to it is in flight, new
    pushes wait and go together in the next call (up to MAX_PUSHES each), so under load
    one RPC carries many messages and at low load nothing waits.
    """

    def __init__(self, directory: ServiceDirectory, timeout: float) -> None:
        self._directory = directory
        self._timeout = timeout
        self._pending: dict[str, list[tuple[list[Push], asyncio.Future[list[int]]]]] = {}
        self._flushing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stubs: dict[str, tuple[grpc.aio.Channel, chat_pb2_grpc.ChatPeerServiceStub]] = {}
        self._renewed: dict[str, float] = {}

    def _stub(self, address: str) -> tuple[grpc.aio.Channel, chat_pb2_grpc.ChatPeerServiceStub]:
        channel = self._directory.channel_to(address)
        cached = self._stubs.get(address)
        if cached is None or cached[0] is not channel:
            cached = (channel, chat_pb2_grpc.ChatPeerServiceStub(channel))
            self._stubs[address] = cached
        return cached

    def _renew(self, address: str, channel: grpc.aio.Channel) -> None:
        """Drop a channel that answered UNAVAILABLE so the next call dials afresh.

        A server restarted on the same address leaves our channel in gRPC's reconnect
        backoff (a second or more, growing), failing every call at once meanwhile; the
        ring does not change, so nothing else would replace it.
        """
        cached = self._stubs.get(address)
        now = time.monotonic()
        if (
            cached is not None
            and cached[0] is channel
            and now - self._renewed.get(address, 0.0) >= RENEW_INTERVAL
        ):
            logger.debug("renewing the channel to %s after UNAVAILABLE", address)
            self._renewed[address] = now
            self._stubs.pop(address, None)
            self._directory.forget(address)

    def forget(self, address: str) -> None:
        """Drop the stub and channel of a chat server that left the ring."""
        self._stubs.pop(address, None)
        self._renewed.pop(address, None)
        self._directory.forget(address)

    def submit(self, address: str, pushes: Sequence[Push]) -> asyncio.Future[list[int]]:
        """Queue pushes for ``address``; the future resolves to the offline users among the
        pushes' inbox entries, or fails with the grpc error of the Deliver call."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(address, []).append((list(pushes), future))
        if address not in self._flushing:
            self._flushing.add(address)
            task = asyncio.create_task(self._flush(address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _flush(self, address: str) -> None:
        try:
            while self._pending.get(address):
                waiting = self._pending[address]
                batch: list[tuple[list[Push], asyncio.Future[list[int]]]] = []
                size = 0
                while waiting and (not batch or size + len(waiting[0][0]) <= MAX_PUSHES):
                    item = waiting.pop(0)
                    batch.append(item)
                    size += len(item[0])
                await self._call(address, batch)
        finally:
            # No await between the loop's last check and here: nothing is left behind.
            self._flushing.discard(address)
            if not self._pending.get(address):
                self._pending.pop(address, None)

    async def _call(
        self, address: str, batch: list[tuple[list[Push], asyncio.Future[list[int]]]]
    ) -> None:
        pushes = [p for item, _ in batch for p in item]
        try:
            offline: set[int] = set()
            for start in range(0, len(pushes), MAX_PUSHES):
                chunk = pushes[start : start + MAX_PUSHES]
                channel, stub = self._stub(address)
                try:
                    reply = await stub.Deliver(
                        chat_pb2.DeliverRequest(pushes=[push_pb(p) for p in chunk]),
                        metadata=self._directory.metadata(),
                        timeout=self._timeout,
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        self._renew(address, channel)
                    raise
                offline.update(reply.offline_user_ids)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for item, future in batch:
            if not future.done():
                future.set_result(
                    sorted(
                        {
                            p.user_id
                            for p in item
                            if p.user_id in offline and isinstance(p.event, InboxEntry)
                        }
                    )
                )

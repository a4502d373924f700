"""ChatPeerService: forwarding pushes between chat servers (client and server side).

Pushes to one server go over one long-lived ``DeliverStream`` (a request and its
response are one HTTP/2 frame each way; a unary ``Deliver`` costs a call's setup and
teardown on both servers every time). A stream that fails or times out is dropped (the
push is retried, see :mod:`chat_svc.delivery`) and the next push opens another; a server
that does not know the stream (UNIMPLEMENTED: an older version, mid-upgrade) is called
with ``Deliver``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
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
UNARY_RECHECK = 60.0
"""Seconds a server without DeliverStream gets unary Deliver calls before the stream is
tried again."""
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
        return chat_pb2.DeliverResponse(offline_user_ids=self._deliver(request.pushes))

    async def DeliverStream(
        self, requests: AsyncIterator[chat_pb2.DeliverStreamRequest], context: Context
    ) -> AsyncIterator[chat_pb2.DeliverStreamResponse]:
        require_service()
        async for request in requests:
            yield chat_pb2.DeliverStreamResponse(offline_user_ids=self._deliver(request.pushes))

    def _deliver(self, raw_pushes: Sequence[chat_pb2.Push]) -> list[int]:
        if len(raw_pushes) > MAX_PUSHES:
            raise InvalidArgument.field("pushes", f"at most {MAX_PUSHES} per call")
        pushes = [p for p in (push_from_pb(raw) for raw in raw_pushes) if p is not None]
        return deliver_local(self._hub, pushes)


class PeerStream:
    """One open DeliverStream to a chat server: requests go out in order and each waits
    for its response (responses come in request order). Once the stream fails, every
    waiting and later request fails with its error; the owner then opens another."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        stub: chat_pb2_grpc.ChatPeerServiceStub,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self.channel = channel
        self.metadata = metadata
        self._outbox: asyncio.Queue[chat_pb2.DeliverStreamRequest | None] = asyncio.Queue()
        self._waiting: deque[asyncio.Future[chat_pb2.DeliverStreamResponse]] = deque()
        self.error: BaseException | None = None
        self._call = stub.DeliverStream(self._requests(), metadata=metadata)
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[chat_pb2.DeliverStreamRequest]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        error: BaseException = ConnectionError("the peer stream ended")
        try:
            async for reply in self._call:
                if self._waiting:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(reply)
        except asyncio.CancelledError:  # cancelled by fail(), or the server stopping
            self.fail(error)
            raise
        except Exception as exc:  # every waiter gets the stream's end
            error = exc
        self.fail(error)

    def fail(self, error: BaseException) -> None:
        """End the stream: every waiting and later request fails with ``error``."""
        if self.error is None:
            self.error = error
            self._call.cancel()
            self._outbox.put_nowait(None)
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self.error)

    async def deliver(
        self, request: chat_pb2.DeliverStreamRequest, timeout: float
    ) -> chat_pb2.DeliverStreamResponse:
        """Send ``request``; its response (or the stream's error, or TimeoutError)."""
        if self.error is not None:
            raise self.error
        future: asyncio.Future[chat_pb2.DeliverStreamResponse] = (
            asyncio.get_running_loop().create_future()
        )
        future.add_done_callback(_retrieved)  # nobody may be waiting when the stream fails
        self._waiting.append(future)
        self._outbox.put_nowait(request)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self.fail(TimeoutError(f"no answer on the peer stream within {timeout} s"))
            raise


def _retrieved(future: asyncio.Future[chat_pb2.DeliverStreamResponse]) -> None:
    """Mark a request's failure as seen (its caller may have stopped waiting)."""
    if not future.cancelled():
        future.exception()


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
        self._streams: dict[str, PeerStream] = {}
        self._unary_only: dict[str, float] = {}
        """Addresses whose server answered DeliverStream with UNIMPLEMENTED, and when (it
        is tried again UNARY_RECHECK seconds later: the server may have been upgraded)."""

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
        """Drop the stub, stream and channel of a chat server that left the ring."""
        self._stubs.pop(address, None)
        self._unary_only.pop(address, None)
        stream = self._streams.pop(address, None)
        if stream is not None:
            stream.fail(ConnectionError(f"{address} left the ring"))
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
                    raw = [push_pb(p) for p in chunk]
                    offline.update(await self._deliver(address, channel, stub, raw))
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        self._renew(address, channel)
                    raise
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

    async def _deliver(
        self,
        address: str,
        channel: grpc.aio.Channel,
        stub: chat_pb2_grpc.ChatPeerServiceStub,
        pushes: list[chat_pb2.Push],
    ) -> Sequence[int]:
        """The offline users of one request on the stream to ``address`` (opened anew
        when the last one failed, the channel was renewed or the service credential was
        reissued); ``Deliver`` for a server without the stream."""
        metadata = self._directory.metadata()
        if time.monotonic() - self._unary_only.get(address, -UNARY_RECHECK) >= UNARY_RECHECK:
            stream = self._streams.get(address)
            if (
                stream is None
                or stream.error is not None
                or (stream.channel, stream.metadata) != (channel, metadata)
            ):
                if stream is not None:
                    stream.fail(ConnectionError("replaced by a new peer stream"))
                stream = self._streams[address] = PeerStream(channel, stub, metadata)
            try:
                request = chat_pb2.DeliverStreamRequest(pushes=pushes)
                reply = await stream.deliver(request, self._timeout)
                return reply.offline_user_ids
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                logger.info("%s has no DeliverStream: using Deliver", address)
                self._unary_only[address] = time.monotonic()
        unary: chat_pb2.DeliverResponse = await stub.Deliver(
            chat_pb2.DeliverRequest(pushes=pushes), metadata=metadata, timeout=self._timeout
        )
        return unary.offline_user_ids

"""Typed wrapper of PresenceService: batch lookups and a device's presence session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from feedchat.presence.v1 import presence_pb2, presence_pb2_grpc
from feedchat_client.errors import RpcError
from feedchat_client.models import Presence
from feedchat_client.rpc import ServiceClient

STATUSES = {
    "online": presence_pb2.PRESENCE_STATUS_ONLINE,
    "away": presence_pb2.PRESENCE_STATUS_AWAY,
}


class PresenceClient(ServiceClient):
    service = "presence"

    def _stub(self, channel: grpc.aio.Channel) -> Any:
        return presence_pb2_grpc.PresenceServiceStub(channel)

    async def get(self, user_ids: list[int]) -> list[Presence]:
        """Presence of up to 1,000 users, one entry per id in request order."""
        reply = await self._call("GetPresence", presence_pb2.GetPresenceRequest(user_ids=user_ids))
        return [Presence.from_pb(p) for p in reply.presences]

    async def connect(
        self, watch: list[int] | None = None, status: str = "online"
    ) -> PresenceSession:
        """Go online: open Connect, heartbeat in the background, watch ``watch``."""
        stub = self._stub(await self._transport.channel(self.service))
        session = PresenceSession(stub, await self._session.metadata(), watch, status)
        await session.start()
        return session


class PresenceSession:
    """An open Connect stream: the device counts as online until :meth:`close`.

    :meth:`events` yields the snapshot entries and then every change of watched users.
    """

    def __init__(
        self, stub: Any, metadata: tuple[tuple[str, str], ...], watch: list[int] | None, status: str
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._status = STATUSES[status]
        self._outbox: asyncio.Queue[presence_pb2.ConnectRequest | None] = asyncio.Queue()
        if watch:
            self._outbox.put_nowait(
                presence_pb2.ConnectRequest(watch=presence_pb2.Watch(user_ids=watch, replace=True))
            )
        self._call: Any = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._interval = 10.0
        self._first: presence_pb2.ConnectResponse | None = None

    async def _requests(self) -> AsyncIterator[presence_pb2.ConnectRequest]:
        yield presence_pb2.ConnectRequest(heartbeat=presence_pb2.Heartbeat(status=self._status))
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            yield item

    async def start(self) -> None:
        self._call = self._stub.Connect(self._requests(), metadata=self._metadata)
        self._first = await self._read()
        if self._first is not None and self._first.snapshot.session.heartbeat_interval_ms:
            self._interval = self._first.snapshot.session.heartbeat_interval_ms / 1000
        self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval * 0.8)
            self._outbox.put_nowait(presence_pb2.ConnectRequest(heartbeat=presence_pb2.Heartbeat()))

    def set_status(self, status: str) -> None:
        self._outbox.put_nowait(
            presence_pb2.ConnectRequest(heartbeat=presence_pb2.Heartbeat(status=STATUSES[status]))
        )

    def watch(self, user_ids: list[int], replace: bool = False) -> None:
        self._outbox.put_nowait(
            presence_pb2.ConnectRequest(
                watch=presence_pb2.Watch(user_ids=user_ids, replace=replace)
            )
        )

    async def _read(self) -> presence_pb2.ConnectResponse | None:
        """The next frame; None at the stream's end; :class:`RpcError` if it failed."""
        try:
            frame = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise await RpcError.from_call(exc) from None
        return None if frame is grpc.aio.EOF else frame

    async def events(self) -> AsyncIterator[Presence]:
        frame, self._first = self._first, None
        while frame is not None:
            if frame.WhichOneof("frame") == "snapshot":
                for entry in frame.snapshot.presences:
                    yield Presence.from_pb(entry)
            elif frame.WhichOneof("frame") == "change":
                yield Presence.from_pb(frame.change.presence)
            frame = await self._read()

    async def close(self) -> None:
        """Close cleanly: the device goes offline at once."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        self._outbox.put_nowait(None)
        if self._call is not None:
            # Wait (briefly) for the server to end the stream: a cancel that overtook the
            # half-close would leave the device online until the offline timeout. Frames
            # nobody read hold the status back, so read them off.
            with contextlib.suppress(asyncio.TimeoutError, grpc.aio.AioRpcError):
                await asyncio.wait_for(self._drain(), 2)
            self._call.cancel()

    async def _drain(self) -> None:
        while await self._call.read() is not grpc.aio.EOF:
            pass

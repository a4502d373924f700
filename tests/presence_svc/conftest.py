"""Two in-process presence instances on the test etcd and Redis, and device clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from feedchat.presence.v1 import presence_pb2 as pb
from feedchat.presence.v1 import presence_pb2_grpc
from feedchat_runtime.auth import authority_from_config
from presence_svc.app import PresenceApp, build
from presence_svc.config import PresenceConfig
from presence_svc.following import StaticFollowing
from tests.conftest import run_on_both_topologies


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run_on_both_topologies(metafunc)


AUTHORITY = authority_from_config("", "", dev=True)

FAST = {
    "heartbeat_interval": 0.3,
    "offline_timeout": 1.5,
    "sweep_interval": 0.1,
    "heartbeat_flush": 0.005,
}


def user_metadata(user_id: int) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {AUTHORITY.issue_access(user_id).token}"),)


def service_metadata(service: str = "chat") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {AUTHORITY.issue_service(service).token}"),)


class DeviceClient:
    """One device's Connect stream: send frames, read frames, close or vanish."""

    def __init__(self, address: str, user_id: int) -> None:
        self.user_id = user_id
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = presence_pb2_grpc.PresenceServiceStub(self.channel)
        self._outbox: asyncio.Queue[pb.ConnectRequest | None] = asyncio.Queue()
        self.call = self.stub.Connect(self._requests(), metadata=user_metadata(user_id))
        self.closed = False

    async def _requests(self) -> AsyncIterator[pb.ConnectRequest]:
        while True:
            request = await self._outbox.get()
            if request is None:
                return
            yield request

    def send(self, request: pb.ConnectRequest) -> None:
        self._outbox.put_nowait(request)

    def heartbeat(
        self, status: pb.PresenceStatus.ValueType = pb.PRESENCE_STATUS_UNSPECIFIED
    ) -> None:
        self.send(pb.ConnectRequest(heartbeat=pb.Heartbeat(status=status)))

    def watch(self, user_ids: list[int], replace: bool = False) -> None:
        self.send(pb.ConnectRequest(watch=pb.Watch(user_ids=user_ids, replace=replace)))

    def unwatch(self, user_ids: list[int]) -> None:
        self.send(pb.ConnectRequest(unwatch=pb.Unwatch(user_ids=user_ids)))

    async def read(self, timeout: float = 5.0) -> pb.ConnectResponse:
        frame = await asyncio.wait_for(self.call.read(), timeout)
        assert frame is not grpc.aio.EOF, "stream ended"
        return frame  # type: ignore[no-any-return]

    async def snapshot(self, timeout: float = 5.0) -> pb.Snapshot:
        frame = await self.read(timeout)
        assert frame.WhichOneof("frame") == "snapshot", frame
        return frame.snapshot

    async def change(self, timeout: float = 5.0) -> pb.Presence:
        frame = await self.read(timeout)
        assert frame.WhichOneof("frame") == "change", frame
        return frame.change.presence

    async def close(self) -> None:
        """Half-close cleanly and wait for the server to end the stream."""
        self._outbox.put_nowait(None)
        while await asyncio.wait_for(self.call.read(), 5.0) is not grpc.aio.EOF:
            pass
        await self.shut()

    async def vanish(self) -> None:
        """Drop the connection without saying goodbye."""
        self.call.cancel()
        await self.shut()

    async def shut(self) -> None:
        if not self.closed:
            self.closed = True
            self.call.cancel()
            await self.channel.close()


@dataclass
class Cluster:
    apps: list[PresenceApp]
    graph: dict[int, list[int]]
    clients: list[DeviceClient] = field(default_factory=list)

    async def connect(self, instance: int, user_id: int) -> DeviceClient:
        """A device of ``user_id`` on one instance, after its first snapshot arrived."""
        client = DeviceClient(self.apps[instance].address, user_id)
        self.clients.append(client)
        return client

    async def lookup(self, user_ids: list[int], instance: int = 0) -> list[pb.Presence]:
        async with grpc.aio.insecure_channel(self.apps[instance].address) as channel:
            stub = presence_pb2_grpc.PresenceServiceStub(channel)
            reply = await stub.GetPresence(
                pb.GetPresenceRequest(user_ids=user_ids), metadata=service_metadata()
            )
            return list(reply.presences)

    async def status(self, user_id: int) -> int:
        return (await self.lookup([user_id]))[0].status


@pytest.fixture
async def start_cluster(
    make_config: Callable[..., Any], redis: Any
) -> AsyncIterator[Callable[..., Awaitable[Cluster]]]:
    """Start two presence instances (settings: FAST plus overrides)."""
    started: list[Cluster] = []

    async def start(**overrides: Any) -> Cluster:
        graph: dict[int, list[int]] = {}
        apps = []
        for i in range(2):
            config = make_config(PresenceConfig, instance=f"presence-{i}", **{**FAST, **overrides})
            app = await build(config, StaticFollowing(graph))
            await app.start()
            apps.append(app)
        cluster = Cluster(apps, graph)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        for client in cluster.clients:
            await client.shut()
        for app in cluster.apps:
            await app.stop()

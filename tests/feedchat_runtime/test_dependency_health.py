"""Health tells the truth on every service: a lost dependency means NOT_SERVING until it
is back, then SERVING again without a restart."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from feedchat_local.embedded import etcd_server, redis_server
from feedchat_runtime.registry import etcd_client
from feedchat_runtime.server import ServiceHost
from tests.feedchat_client.system import System
from tests.feedchat_runtime import demo_server
from tests.waiting import wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
REDIS_USERS = ("account", "feed", "presence", "notify", "chat")


async def _status(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
        return int(reply.status)


async def _statuses(system: System) -> dict[str, int]:
    addresses = {name: host.address for name, host in system.hosts.items()}
    addresses["chat"] = system.chats[0].address
    return {name: await _status(address) for name, address in addresses.items()}


async def _wait_statuses(system: System, want: dict[str, int], seconds: float) -> None:
    async def reached() -> bool:
        seen = await _statuses(system)
        return all(seen[name] == status for name, status in want.items())

    await wait_until(reached, seconds, f"health {want}")


async def _whole_system(
    make_config: Callable[..., Any], prefix: str, etcd_address: str, redis_url: str
) -> System:
    config = functools.partial(
        make_config, etcd=etcd_address, redis_url=redis_url, health_interval=0.2
    )
    system = System(config, etcd_address, prefix)
    await system.start(chat_servers=1, presence=True, notify=True)
    return system


async def test_lost_redis_turns_every_redis_service_not_serving_then_back(
    tmp_path: Path, make_config: Callable[..., Any], etcd: Any, etcd_prefix: str
) -> None:
    own_redis = redis_server(tmp_path / "redis")
    await asyncio.to_thread(own_redis.start)
    system = await _whole_system(
        make_config, etcd_prefix, etcd.address, f"redis://{own_redis.address}/0"
    )
    try:
        everyone = {name: SERVING for name in (*REDIS_USERS, "router")}
        assert await _statuses(system) == everyone

        await asyncio.to_thread(own_redis.kill)
        # the router needs only etcd: it keeps serving
        await _wait_statuses(
            system, {**{name: NOT_SERVING for name in REDIS_USERS}, "router": SERVING}, 5
        )

        await asyncio.to_thread(own_redis.start)
        await _wait_statuses(system, everyone, 10)
    finally:
        await system.stop()
        own_redis.stop()


async def test_lost_etcd_turns_every_service_not_serving_then_back(
    tmp_path: Path,
    make_config: Callable[..., Any],
    etcd_prefix: str,
    redis_url: str,
    redis: Any,
) -> None:
    own_etcd = etcd_server(tmp_path / "etcd")
    await asyncio.to_thread(own_etcd.start)
    await wait_until(lambda: _grants_leases(own_etcd.address), 20, "the new etcd to answer")
    system = await _whole_system(make_config, etcd_prefix, own_etcd.address, redis_url)
    try:
        names = (*REDIS_USERS, "router")
        assert await _statuses(system) == {name: SERVING for name in names}

        await asyncio.to_thread(own_etcd.kill)
        await _wait_statuses(system, {name: NOT_SERVING for name in names}, 10)

        await asyncio.to_thread(own_etcd.start)
        await _wait_statuses(system, {name: SERVING for name in names}, 20)
    finally:
        await system.stop()
        own_etcd.stop()


async def test_an_added_probe_is_one_more_dependency(make_config: Callable[..., Any]) -> None:
    """How PostgreSQL (or anything else) plugs in: one named probe."""
    host = ServiceHost(make_config(health_interval=0.05), "demo")
    await host.open()
    reachable = True

    async def database() -> bool:
        return reachable

    host.dependencies.add("database", database)
    demo_server.build(host)
    await host.start()
    try:
        assert await _status(host.address) == SERVING
        reachable = False
        await wait_until(lambda: _is(host.address, NOT_SERVING), 5, "NOT_SERVING")
        assert host.dependencies.failing == ["database"]
        assert _up("database") == 0.0
        reachable = True
        await wait_until(lambda: _is(host.address, SERVING), 5, "SERVING again")
        assert _up("database") == 1.0
    finally:
        await host.stop()


async def test_a_probe_that_hangs_counts_as_unreachable(make_config: Callable[..., Any]) -> None:
    host = ServiceHost(make_config(health_interval=0.05, health_timeout=0.2), "demo")
    await host.open()
    hang = asyncio.Event()

    async def slow() -> None:
        if hang.is_set():
            await asyncio.Event().wait()

    host.dependencies.add("slow", slow)
    demo_server.build(host)
    await host.start()
    try:
        assert await _status(host.address) == SERVING
        hang.set()
        await wait_until(lambda: _is(host.address, NOT_SERVING), 5, "NOT_SERVING")
    finally:
        await host.stop()


async def _grants_leases(address: str) -> bool:
    """A freshly started etcd answers ports before it grants leases (leader election)."""
    client = etcd_client(address, timeout=1)
    try:
        await client.lease(2)
        return True
    except Exception:  # noqa: BLE001 - not ready yet
        return False
    finally:
        await client.close()


async def _is(address: str, want: int) -> bool:
    return await _status(address) == want


def _up(dependency: str) -> float | None:
    """The feedchat_dependency_up gauge /metrics shows for ``dependency``."""
    return REGISTRY.get_sample_value("feedchat_dependency_up", {"dependency": dependency})

"""The etcd registry: leases, re-registration, live membership through etcd trouble."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedchat_local.embedded import EmbeddedServer
from feedchat_runtime.registry import EtcdSession, Member, Registration, ServiceWatch, list_members
from feedchat_runtime.server import ServiceHost
from tests.feedchat_runtime import demo_server

DEMO = Path(demo_server.__file__)


async def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def _restart_wiped(server: EmbeddedServer) -> None:
    server.stop()
    shutil.rmtree(server.data_dir / "etcd")
    server.start()


async def _instances(etcd: str, prefix: str, service: str) -> set[str]:
    session = EtcdSession(etcd, prefix)
    try:
        return {m.instance for m in await list_members(session.client, prefix, service)}
    finally:
        await session.client.close()


async def test_killed_process_leaves_registry_within_ttl(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DEMO),
        "--etcd",
        etcd.address,
        "--etcd-prefix",
        etcd_prefix,
        "--lease-ttl",
        "2",
        "--instance",
        "doomed",
        "--dev",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line.startswith(b"READY")
    assert await _instances(etcd.address, etcd_prefix, "demo") == {"doomed"}
    process.kill()
    await process.wait()
    killed_at = time.monotonic()

    async def gone() -> bool:
        return not await _instances(etcd.address, etcd_prefix, "demo")

    await _wait(gone, 6, "the killed process to leave the registry")
    # Gone within the lease TTL (2 s) plus etcd's expiry granularity, not instantly.
    assert time.monotonic() - killed_at < 4.5


async def test_registration_returns_after_etcd_restarts_empty(
    private_etcd: EmbeddedServer, make_config: Callable[..., Any]
) -> None:
    config = make_config(etcd=private_etcd.address, instance="survivor")
    host = ServiceHost(config, "demo")
    await host.open()
    demo_server.build(host)
    await host.start()
    try:
        _restart_wiped(private_etcd)  # every lease and key is gone

        async def back() -> bool:
            return await _instances(config.etcd, config.etcd_prefix, "demo") == {"survivor"}

        await _wait(back, 15, "the live process to re-register")
    finally:
        await host.stop()


async def test_watch_sees_joins_and_leaves(
    make_config: Callable[..., Any],
) -> None:
    config = make_config()
    observer = EtcdSession(config.etcd, config.etcd_prefix, ttl=2)
    await observer.start()
    watch = ServiceWatch(observer, "demo")
    await watch.start()
    seen: list[set[str]] = []
    watch.listeners.append(lambda members: seen.append(set(members)))
    hosts = []
    try:
        for name in ("a", "b"):
            host = ServiceHost(make_config(instance=name), "demo")
            await host.open()
            demo_server.build(host)
            await host.start()
            hosts.append(host)
        members = await watch.wait_for(lambda m: set(m) == {"a", "b"}, timeout=5)
        assert members["a"].address == hosts[0].address
        await hosts[0].stop()
        await watch.wait_for(lambda m: set(m) == {"b"}, timeout=5)
        assert seen[-1] == {"b"}
    finally:
        for host in hosts:
            await host.stop()
        await watch.stop()
        await observer.close()


async def test_watch_recovers_after_etcd_restart(
    private_etcd: EmbeddedServer, make_config: Callable[..., Any]
) -> None:
    config = make_config(etcd=private_etcd.address)
    observer = EtcdSession(config.etcd, config.etcd_prefix, ttl=2)
    await observer.start()
    watch = ServiceWatch(observer, "demo")
    await watch.start()
    try:
        _restart_wiped(private_etcd)
        writer = EtcdSession(config.etcd, config.etcd_prefix, ttl=2)
        await writer.start()
        try:
            member = Member("demo", "late", "127.0.0.1:1", "v", 0.0)
            await Registration(writer, member).register()
            members = await watch.wait_for(lambda m: "late" in m, timeout=15)
            assert members["late"].address == "127.0.0.1:1"
        finally:
            await writer.close()
    finally:
        await watch.stop()
        await observer.close()


async def test_endpoint_list_fails_over_to_a_live_member(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    from feedchat_local.embedded import free_port

    dead = f"127.0.0.1:{free_port()}"
    session = EtcdSession(f"{dead},{etcd.address}", etcd_prefix, ttl=2)
    await session.start()
    try:
        await Registration(session, Member("demo", "listed", "127.0.0.1:9", "v")).register()
        assert await _instances(etcd.address, etcd_prefix, "demo") == {"listed"}
    finally:
        await session.close()


async def test_key_is_reattached_when_a_reattach_fails_once(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    session = EtcdSession(etcd.address, etcd_prefix, ttl=2)
    await session.start()
    failures: list[int] = []

    async def flaky(lease_id: int) -> None:
        if not failures:  # the first re-attach after the lease is lost fails
            failures.append(lease_id)
            raise OSError("etcd flaked")

    try:
        await Registration(session, Member("demo", "sticky", "127.0.0.1:9", "v")).register()
        session.on_new_lease(flaky)
        first = session.lease_id
        assert first is not None
        await session.client.revoke_lease(first)  # the lease is gone, and the key with it

        async def back_on_a_fresh_lease() -> bool:
            fresh = session.lease_id not in (None, first, *failures)
            listed = await _instances(etcd.address, etcd_prefix, "demo") == {"sticky"}
            return fresh and listed

        await _wait(back_on_a_fresh_lease, 10, "registration back after a failed re-attach")
        assert len(failures) == 1
    finally:
        await session.close()

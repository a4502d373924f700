"""`feedchat up` end to end: every installed service registered, healthy, supervised; a
data folder from before PostgreSQL is set aside with one line."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from feedchat_local.embedded import free_port
from feedchat_local.services import SERVICES
from feedchat_runtime.registry import EtcdSession, Member, list_members
from tests.grpcurl import call
from tests.tempdirs import outside_pytest_tmp
from tests.waiting import wait_until

FEEDCHAT = Path(sys.executable).parent / "feedchat"


async def _up_until_ready(
    *argv: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    """Start `feedchat up` and read its output until it prints that it is up (killing it
    if it does not get there)."""
    up = await asyncio.create_subprocess_exec(
        str(FEEDCHAT),
        "up",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert up.stdout is not None
    output: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(up.stdout.readline(), 90)).decode()
            assert line, "feedchat up exited early:\n" + "".join(output)
            output.append(line)
            if line.startswith("Ctrl-C stops everything."):
                return up, "".join(output)
    except BaseException:
        if up.returncode is None:
            up.kill()
            await up.wait()
        raise


async def _status(etcd: str, *flags: str) -> str:
    """What `feedchat status` prints (it must succeed)."""
    status = await asyncio.create_subprocess_exec(
        str(FEEDCHAT),
        "status",
        *flags,
        "--etcd",
        etcd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(status.communicate(), 30)
    assert status.returncode == 0, out.decode() + err.decode()
    return out.decode()


async def _members(etcd: str) -> list[Member]:
    session = EtcdSession(etcd, "/feedchat")
    try:
        return await list_members(session.client, "/feedchat")
    finally:
        await session.client.close()


def _free_offset(chat_servers: int) -> int:
    """A port offset whose every service port is free and below the kernel's ephemeral
    range (32768+), so no client socket of this or another test can take one meanwhile."""
    for _ in range(50):
        offset = random.randrange(-40000, -20000, 10)
        ports = [
            s.base_port + offset + i
            for s in SERVICES
            for i in range(chat_servers if s.name == "chat" else s.default_instances)
        ]
        if _all_free(ports):
            return offset
    raise AssertionError("no free block of service ports")


def _all_free(ports: list[int] | range) -> bool:
    try:
        for port in ports:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


async def test_feedchat_up_runs_supervises_and_stops() -> None:
    with outside_pytest_tmp() as folder:
        await _up_runs_supervises_and_stops(folder)


async def _up_runs_supervises_and_stops(tmp_path: Path) -> None:
    etcd_port, redis_port, postgres_port = free_port(), free_port(), free_port()
    etcd = f"127.0.0.1:{etcd_port}"
    # A data folder from before PostgreSQL: Redis data, no PostgreSQL data.
    (tmp_path / "data" / "redis").mkdir(parents=True)
    (tmp_path / "data" / "redis" / "appendonly.aof").write_text("old")
    up, text = await _up_until_ready(
        "--data-dir",
        str(tmp_path / "data"),
        "--etcd-port",
        str(etcd_port),
        "--redis-port",
        str(redis_port),
        "--postgres-port",
        str(postgres_port),
        "--port-offset",
        str(_free_offset(chat_servers=2)),
        "--chat-servers",
        "2",
        "--fsync",
        "always",
        env={**os.environ, "FEEDCHAT_LOG_FORMAT": "json"},
    )
    output = [text]
    try:
        assert "from before PostgreSQL became the record" in text, text
        assert (tmp_path / "data" / "redis-before-postgres" / "appendonly.aof").exists()
        redis = aioredis.Redis(port=redis_port, decode_responses=True)
        try:  # --fsync always reached the embedded Redis
            assert await redis.config_get("appendfsync") == {"appendfsync": "always"}
        finally:
            await redis.aclose()
        expected = {s.name for s in SERVICES if s.available()}
        members = await _members(etcd)
        assert {m.service for m in members} == expected, "".join(output)
        for member in members:
            health = await call(member.address, "grpc.health.v1.Health/Check")
            assert health.json() == {"status": "SERVING"}, member

        # `feedchat status --json` names each instance's metrics URL; each one serves
        # Prometheus text with the request histograms (the health checks above count).
        listed = await _status(etcd, "--json")
        instances = [json.loads(line) for line in listed.splitlines()]
        assert {i["instance"] for i in instances} == {m.instance for m in members}
        async with httpx.AsyncClient() as http:
            for instance in instances:
                scraped = await http.get(instance["metrics"], timeout=5)
                assert scraped.status_code == 200, instance
                assert "feedchat_rpc_duration_seconds_bucket{" in scraped.text, instance
                assert 'method="/grpc.health.v1.Health/Check"' in scraped.text, instance

        # A crashed child is restarted and registers again under the same name.
        victim = members[0]
        os.kill(victim.pid, signal.SIGKILL)

        async def restarted() -> bool:
            again = [m for m in await _members(etcd) if m.instance == victim.instance]
            return bool(again) and again[0].pid != victim.pid

        await wait_until(restarted, 30, "the killed child restarted", interval=0.3)
    finally:
        up.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(up.communicate(), 60)
        output.append(rest.decode())
    assert up.returncode == 0, "".join(output)
    assert "stopped." in "".join(output)


async def test_up_refuses_an_external_etcd_together_with_an_embedded_port(
    tmp_path: Path,
) -> None:
    up = await asyncio.create_subprocess_exec(
        str(FEEDCHAT),
        "up",
        "--data-dir",
        str(tmp_path),
        "--etcd",
        "127.0.0.1:1",
        "--etcd-port",
        "23790",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(up.communicate(), 30)
    assert up.returncode == 1
    assert err.decode().splitlines() == [
        "--etcd-port is the embedded etcd's port; --etcd names an external one: give one of them"
    ]


async def test_up_with_its_etcd_port_taken_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        up = await asyncio.create_subprocess_exec(
            str(FEEDCHAT),
            "up",
            "--data-dir",
            str(tmp_path),
            "--etcd-port",
            str(taken),
            "--redis-port",
            str(free_port()),
            "--postgres-port",
            str(free_port()),
            "--port-offset",
            str(_free_offset(chat_servers=1)),
            "--chat-servers",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(up.communicate(), 60)
    assert up.returncode == 1, out.decode() + err.decode()
    [line] = err.decode().splitlines()
    assert f"etcd port {taken}" in line and "already in use" in line, line
    assert "etcd.log" in line, line
    assert "Traceback" not in out.decode()


def _free_block(size: int, bus: bool = False) -> int:
    """The first of ``size`` consecutive free ports below the ephemeral range (with
    ``bus``: Redis Cluster ports, whose bus ports +10000 must be free and below it too)."""
    for _ in range(100):
        first = random.randrange(10000, 22000) if bus else random.randrange(12000, 30000)
        ports = range(first, first + size)
        if _all_free([*ports, *(p + 10000 for p in ports)] if bus else ports):
            return first
    raise AssertionError("no free block of ports")


async def test_up_with_three_etcd_members_registers_through_any_member() -> None:
    with outside_pytest_tmp() as folder:
        etcd_port = _free_block(6)
        up, text = await _up_until_ready(
            "--data-dir",
            str(folder / "data"),
            "--etcd-members",
            "3",
            "--etcd-port",
            str(etcd_port),
            "--redis-port",
            str(free_port()),
            "--postgres-port",
            str(free_port()),
            "--only",
            "router",
            "--port-offset",
            str(_free_offset(chat_servers=1)),
        )
        try:
            assert text.count("starting etcd member") == 3, text
            for member in range(3):  # every member answers with the same registry
                routers = await _members(f"127.0.0.1:{etcd_port + 2 * member}")
                assert [m.service for m in routers] == ["router"], text
        finally:
            up.send_signal(signal.SIGINT)
            await asyncio.wait_for(up.communicate(), 60)
        assert up.returncode == 0


async def test_up_with_a_redis_cluster_starts_the_services_that_run_on_it_and_restarts_it() -> None:
    with outside_pytest_tmp() as folder:
        etcd_port, redis_port = free_port(), _free_block(6, bus=True)
        argv = (
            "--data-dir",
            str(folder / "data"),
            "--redis-cluster",
            "3",
            "--etcd-port",
            str(etcd_port),
            "--redis-port",
            str(redis_port),
            "--postgres-port",
            str(free_port()),
            "--only",
            "presence,chat",
            "--port-offset",
            str(_free_offset(chat_servers=3)),
        )
        for run in ("first", "restart"):
            up, text = await _up_until_ready(*argv)
            try:
                assert text.count("starting Redis Cluster node") == 6, text
                assert "not started" not in text, text
                assert f"redis+cluster://127.0.0.1:{redis_port}," in text, text
                members = await _members(f"127.0.0.1:{etcd_port}")
                services = sorted(m.service for m in members)
                assert services == ["chat", "chat", "chat", "presence"], (run, text)
                shown = await _status(f"127.0.0.1:{etcd_port}")
                assert shown.count(" master   slots ") == 3, shown
                assert shown.count(" replica  of ") == 3, shown
                assert "FAILED" not in shown and "leader" in shown, shown
            finally:
                up.send_signal(signal.SIGINT)
                await asyncio.wait_for(up.communicate(), 60)
            assert up.returncode == 0

"""Killing notify_svc in the middle of a delivery loses nothing and sends nothing twice."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from feedchat_local.embedded import EmbeddedServer
from notify_svc.app import NotifyApp
from tests.notify_svc.conftest import (
    FAST,
    StubFor,
    enqueue,
    list_notifications,
    queue_drained,
    register_webhook,
)
from tests.notify_svc.receiver import STALL, Receiver
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spawn(
    etcd: EmbeddedServer, redis_url: str, etcd_prefix: str, receiver: Receiver, tmp_path: Path
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start `python -m notify_svc` subprocesses as `feedchat up` would (plus test flags)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(instance: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "notify_svc",
            "--port",
            "0",
            "--instance",
            instance,
            "--etcd",
            etcd.address,
            "--etcd-prefix",
            etcd_prefix,
            "--redis-url",
            redis_url,
            "--dev",
            "--lease-ttl",
            "2",
            "--log-format",
            "text",
            "--webhook-allow",
            f"127.0.0.1:{receiver.port}",
        ]
        for name, value in FAST.items():
            flag = "--" + name.replace("_", "-")
            argv += [flag, "true" if value is True else str(value)]
        log = open(tmp_path / f"{instance}.log", "wb")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_killed_notify_svc_mid_delivery_loses_nothing_and_delivers_once(
    start_notify: Callable[..., Awaitable[NotifyApp]],
    channel_to: StubFor,
    receiver: Receiver,
    redis: aioredis.Redis,
    spawn: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    api = await start_notify(worker=False)  # registration only; workers are subprocesses
    stub = channel_to(api)
    await register_webhook(stub, 42, receiver.url)
    receiver.plan = [STALL]  # the first POST hangs: the worker is mid-delivery

    first = spawn("notify-a")
    await enqueue(redis, user_id=42, message_id=7101, preview="survive this")
    try:
        await wait_until(lambda: len(receiver.requests) == 1, timeout=30)
    except AssertionError:
        raise AssertionError((tmp_path / "notify-a.log").read_text()) from None
    first.kill()  # SIGKILL: no shutdown, the entry stays pending in the group
    first.wait()
    assert not await queue_drained(redis)

    spawn("notify-b")
    try:
        await wait_until(lambda: queue_drained(redis), timeout=30)
    except AssertionError:
        raise AssertionError((tmp_path / "notify-b.log").read_text()) from None

    assert [r.status for r in receiver.requests] == [None, 200]
    assert len(receiver.delivered) == 1
    assert receiver.delivered[0].headers["x-feedchat-delivery"] == "7101.phone"
    listed = await list_notifications(stub, 42)
    assert [(n.notification_id, n.count, n.preview) for n in listed] == [(7101, 1, "survive this")]

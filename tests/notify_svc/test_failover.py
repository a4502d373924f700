"""A Redis Cluster master dies under load: notify_svc recovers by itself, every job whose
enqueue a replica confirmed is applied, and no job is applied twice.

The producer plays chat_svc: it XADDs jobs to ``notify:queue`` on the queue's master and
counts a job as acknowledged once ``WAIT`` confirms a replica has it (chat_svc does not
wait for replicas yet: without WAIT, a job acknowledged just before the kill can be lost
with the master). The master holding the queue is SIGKILLed mid-stream; its replica is
promoted; the promoted master has no replica until the killed node is started again (it
rejoins as a replica), so acknowledgements resume only then, as they would in production
once the dead process is replaced. Measured: kill -> first enqueue written, and kill ->
first successful ListNotifications of a user whose keys live on the killed master.

Each user's jobs are in one channel and collapse into one open notification, so its
``count`` is the number of times a job was applied; each applied job leaves its
(user, message) marker. Applied twice would make the counts exceed the markers; lost
would leave an acknowledged job without a marker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from feedchat.notify.v1 import notify_pb2 as pb
from feedchat_local.embedded_cluster import RedisClusterNodes
from feedchat_runtime.notify_queue import QUEUE_KEY
from feedchat_runtime.redis_client import RedisClient, connect_any
from feedchat_runtime.replies import text
from notify_svc.app import NotifyApp
from notify_svc.store import list_key, notification_key, seen_key
from tests.notify_svc.conftest import StubFor, queue_drained, user_metadata
from tests.waiting import wait_until

USERS = 24
RECOVERY_BOUND = 15.0
"""Seconds from the kill until enqueues and calls on the killed master's slots succeed:
cluster-node-timeout (2 s) + the replica's election + the clients re-reading the slot map,
with a wide margin for a loaded CI machine."""


async def _queue_master(nodes: RedisClusterNodes) -> aioredis.Redis:
    """A one-connection client of the node serving the queue's slot now, asked of any
    live node (WAIT must follow the XADD on the same connection)."""
    for node in nodes.nodes:
        if node.process is None or node.process.poll() is not None:
            continue
        probe = aioredis.Redis(host=node.host, port=node.port, socket_timeout=1)
        try:
            slot = int(await probe.execute_command("CLUSTER KEYSLOT", QUEUE_KEY))  # type: ignore[no-untyped-call]
            for first, last, primary, *_ in await probe.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
                if int(first) <= slot <= int(last):
                    return aioredis.Redis(
                        host=node.host,
                        port=int(primary[1]),
                        socket_timeout=1,
                        single_connection_client=True,
                    )
        except (RedisError, OSError):
            continue
        finally:
            await probe.aclose()
    raise ConnectionError("no live node answers")


class Producer:
    """Enqueues one job every few ms until stopped; records which a replica confirmed."""

    def __init__(self, nodes: RedisClusterNodes) -> None:
        self.nodes = nodes
        self.acked: list[int] = []
        self.unsure: list[int] = []
        self.written_at: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        client: aioredis.Redis | None = None
        message_id = 1000
        while not stop.is_set():
            message_id += 1
            try:
                if client is None:
                    client = await _queue_master(self.nodes)
                await client.xadd(QUEUE_KEY, _job(message_id))
                self.written_at.append(time.monotonic())
                if int(await client.execute_command("WAIT", 1, 200)) < 1:  # type: ignore[no-untyped-call]
                    self.unsure.append(message_id)  # written, no replica confirmed it
                    continue
                self.acked.append(message_id)
            except (RedisError, OSError):
                self.unsure.append(message_id)  # maybe written, maybe not: never acked
                if client is not None:
                    await client.aclose()
                client = None
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(0.005)
        if client is not None:
            await client.aclose()


def _job(message_id: int) -> dict[Any, Any]:
    return {
        "kind": "chat_message",
        "user_id": str(_user(message_id)),
        "channel_id": str(500 + _user(message_id)),
        "message_id": str(message_id),
        "sender_id": "9",
        "preview": f"m{message_id}",
        "created_ms": "1760000000000",
    }


def _user(message_id: int) -> int:
    return 1 + message_id % USERS


async def _list_ok(stub: Any, user_id: int) -> bool:
    try:
        await stub.ListNotifications(
            pb.ListNotificationsRequest(page_size=1),
            metadata=user_metadata(user_id),
            timeout=1.0,
        )
    except grpc.aio.AioRpcError:
        return False
    return True


@pytest.mark.parametrize("redis_url", ["node"], indirect=True)  # unused: own cluster below
async def test_killed_queue_master_fails_over_and_every_acknowledged_job_applies_once(
    private_redis_cluster: RedisClusterNodes,
    start_notify: Callable[..., Awaitable[NotifyApp]],
    channel_to: StubFor,
) -> None:
    nodes = private_redis_cluster
    settings = {"redis_url": nodes.url, "collapse_window": 600.0, "max_attempts": 50}
    first = await start_notify(**settings)
    await start_notify(**settings)
    stub = channel_to(first)
    victim = nodes.master_of(QUEUE_KEY)
    probe_user = next(
        u for u in range(1, 10_000) if nodes.master_of(list_key(u)).port == victim.port
    )
    assert await _list_ok(stub, probe_user)

    producer = Producer(nodes)
    stop = asyncio.Event()
    producing = asyncio.create_task(producer.run(stop))
    await wait_until(lambda: len(producer.acked) >= 100)
    victim.kill()
    killed_at = time.monotonic()
    # Enqueues and calls on the killed master's slots come back by themselves.
    await wait_until(
        lambda: any(t > killed_at for t in producer.written_at), timeout=RECOVERY_BOUND
    )
    enqueue_back = min(t for t in producer.written_at if t > killed_at) - killed_at
    await wait_until(lambda: _list_ok(stub, probe_user), timeout=RECOVERY_BOUND, interval=0.05)
    call_back = time.monotonic() - killed_at
    victim.start()  # the dead node comes back as the promoted master's replica
    acked = len(producer.acked)
    await wait_until(lambda: len(producer.acked) >= acked + 100, timeout=30)
    stop.set()
    await producing
    print(
        f"\nfailover: kill -> first enqueue written {enqueue_back:.2f} s, -> first "
        f"ListNotifications {call_back:.2f} s; {len(producer.acked)} jobs acknowledged "
        f"by a replica, {len(producer.unsure)} not"
    )
    assert call_back < RECOVERY_BOUND

    reader: RedisClient = connect_any(nodes.url)
    try:
        await wait_until(lambda: queue_drained(reader), timeout=30)
        for user in range(1, USERS + 1):
            ids = [m for m in producer.acked + producer.unsure if _user(m) == user]
            async with reader.pipeline(transaction=False) as pipe:
                for message_id in ids:
                    pipe.exists(seen_key(user, message_id))
                marked = dict(zip(ids, await pipe.execute(), strict=True))
            lost = [m for m in producer.acked if _user(m) == user and not marked[m]]
            assert not lost, f"acknowledged jobs of user {user} never applied: {lost}"
            applied = 0
            for nid in await reader.zrange(list_key(user), 0, -1):
                note = await reader.hget(notification_key(user, int(text(nid))), "count")
                applied += int(text(note)) if note is not None else 0
            assert applied == sum(marked.values()), f"user {user}: a job applied twice"
        assert not await reader.xlen("notify:dead")
    finally:
        await reader.aclose()

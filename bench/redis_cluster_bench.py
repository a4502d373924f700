#!/usr/bin/env python3
"""presence, notify and chat store paths on a 3-master Redis Cluster beside one Redis
node, and the cluster's failover time -- all in one run.

    .venv/bin/python bench/redis_cluster_bench.py [--seconds 5] [--batch 200]

Starts one Redis and a Redis Cluster (3 masters, 1 replica each) from the pip binary.
For each, through the same client factory the services use:

- presence heartbeats: ``PresenceStore.heartbeats`` batches of ``--batch`` users (what a
  presence instance writes per flush), 4 flushers at once, for ``--seconds``;
- notify apply: ``NotifyStore.apply`` of one job per call (create or collapse), 32 at once;
- chat sends: a send's whole store path -- ``ChatStore.store_message`` (the channel step)
  then ``ChatStore.fan_out`` (both inbox appends, the pending record removed) -- over 200
  direct channels, 64 senders at once (group commit batches them as in a chat server);
  on the cluster also with ``--replica-acks 1`` (a ``WAIT`` per node for each batch).

A third line runs the heartbeats on the cluster with redis-py's own ``RedisCluster`` (its
Python command packer) to show what the hiredis-packing cluster client is worth.

Failover: a user's heartbeats every 20 ms on the cluster; the master holding the user's
keys is SIGKILLed; reported is the time from the kill to the first heartbeat written
again (the replica promoted and the client following it by itself).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio.cluster import ClusterNode, RedisCluster  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from chat_svc.store import ChatStore  # noqa: E402
from feedchat_local.embedded import redis_server  # noqa: E402
from feedchat_local.embedded_cluster import RedisClusterNodes  # noqa: E402
from feedchat_runtime.notify_queue import NotificationKind  # noqa: E402
from feedchat_runtime.redis_client import RedisClient, cluster_nodes, connect_any  # noqa: E402
from feedchat_runtime.replicas import ReplicaAcks  # noqa: E402
from notify_svc.store import NotifyStore  # noqa: E402
from presence_svc.store import Beat, PresenceStore, conns_key  # noqa: E402


async def rate(work: Callable[[], Awaitable[int]], workers: int, seconds: float) -> float:
    """Items per second that ``workers`` loops of ``work`` (returning items done) reach."""
    done = 0
    until = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < until:
            finished = await work()  # not `done += await work()`: that reads `done`
            done += finished  # before the await and drops what other loops added meanwhile

    began = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(workers)))
    return done / (time.monotonic() - began)


async def heartbeats_per_second(client: RedisClient, batch: int, seconds: float) -> float:
    store = PresenceStore(client, max_devices=4)
    await store.scripts.load()
    users = itertools.count(1)

    async def flush() -> int:
        now = int(time.time() * 1000)
        beats = [
            Beat(next(users) % 50_000, "c1", "online", now, now + 30_000) for _ in range(batch)
        ]
        await store.heartbeats(beats)
        return batch

    return await rate(flush, 4, seconds)


async def applies_per_second(client: RedisClient, seconds: float) -> float:
    store = NotifyStore(client)
    messages = itertools.count(1_000_000)

    async def apply() -> int:
        message = next(messages)
        await store.apply(
            message % 5_000,
            NotificationKind.CHAT_MESSAGE,
            message % 7,
            message,
            9,
            "hello",
            1_760_000_000_000,
            60_000,
            600_000,
            50,
        )
        return 1

    return await rate(apply, 32, seconds)


async def chat_sends_per_second(client: RedisClient, seconds: float, replicas: int = 0) -> float:
    store = ChatStore(client, replication=ReplicaAcks(replicas, 1000))
    pairs = 200
    for i in range(pairs):  # channel ids 1000.. spread over the channel buckets
        await store.cache_channel(1_000 + i, [2 * i + 1, 2 * i + 2])
    ids = itertools.count(10**15)
    turns = itertools.count()

    async def send() -> int:
        i = next(turns) % pairs
        message_id = next(ids)
        outcome = await store.store_message(
            sender_id=2 * i + 1,
            channel_id=1_000 + i,
            message_id=message_id,
            client_msg_id=str(message_id),
            text="hello there",
            created_ms=int(time.time() * 1000),
            rate=1e9,
            burst=10**9,
        )
        fanned = await store.fan_out(outcome.message, outcome.recipients)
        assert fanned.error is None
        return 1

    return await rate(send, 64, seconds)


async def failover_seconds(nodes: RedisClusterNodes) -> float:
    client = connect_any(nodes.url)
    store = PresenceStore(client, max_devices=4)
    victim = nodes.master_of(conns_key(7))

    async def beat() -> None:
        now = int(time.time() * 1000)
        await store.heartbeat(Beat(7, "c1", "online", now, now + 30_000))

    await beat()
    victim.kill()
    killed = time.monotonic()
    while True:
        try:
            await beat()
            break
        except RedisError:
            await asyncio.sleep(0.02)
    took = time.monotonic() - killed
    await client.aclose()
    victim.start()
    nodes.wait_ok()
    return took


def plain_cluster(url: str) -> RedisCluster:
    seeds, _, _ = cluster_nodes(url)
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in seeds])


async def main(seconds: float, batch: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        single = redis_server(Path(folder) / "single")
        cluster = RedisClusterNodes(Path(folder) / "cluster", masters=3, replicas=1)
        single.start()
        cluster.start()
        try:
            urls = {"one node": f"redis://{single.address}/0", "cluster": cluster.url}
            beats: dict[str, float] = {}
            applies: dict[str, float] = {}
            sends: dict[str, float] = {}
            for name, url in urls.items():
                client = connect_any(url)
                await client.flushall()
                beats[name] = await heartbeats_per_second(client, batch, seconds)
                applies[name] = await applies_per_second(client, seconds)
                sends[name] = await chat_sends_per_second(client, seconds)
                if name == "cluster":
                    sends["replica acks"] = await chat_sends_per_second(client, seconds, 1)
                await client.aclose()
            plain = plain_cluster(cluster.url)
            plain_beats = await heartbeats_per_second(plain, batch, seconds)
            await plain.aclose()
            failover = await failover_seconds(cluster)
        finally:
            cluster.stop()
            single.stop()
    one, many = beats["one node"], beats["cluster"]
    print(f"presence heartbeats (batches of {batch}, 4 flushers):")
    print(f"  one node              {one:10.0f} /s")
    print(f"  3-master cluster      {many:10.0f} /s   ratio cluster/node {many / one:.2f}")
    print(
        f"  cluster, plain packer {plain_beats:10.0f} /s   ratio hiredis/plain "
        f"{many / plain_beats:.2f}"
    )
    one, many = applies["one node"], applies["cluster"]
    print("notify apply (one job per call, 32 at once):")
    print(f"  one node              {one:10.0f} /s")
    print(f"  3-master cluster      {many:10.0f} /s   ratio cluster/node {many / one:.2f}")
    one, many, acked = sends["one node"], sends["cluster"], sends["replica acks"]
    print("chat sends (channel step + inbox appends, 64 senders, 200 direct channels):")
    print(f"  one node              {one:10.0f} msg/s")
    print(f"  3-master cluster      {many:10.0f} msg/s   ratio cluster/node {many / one:.2f}")
    print(
        f"  cluster, replica acks {acked:10.0f} msg/s   ratio to cluster without {acked / many:.2f}"
    )
    print(f"failover: kill -> first heartbeat written on the promoted replica {failover:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.batch))

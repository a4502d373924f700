"""A Redis Cluster node under presence dies: the node holding an instance's pub/sub
connection is SIGKILLed, and a watcher on that instance still hears a transition made
afterwards (the hub reopens its connection on another node), within a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
import redis.asyncio as aioredis

from feedchat.presence.v1 import presence_pb2 as pb
from feedchat_local.embedded import EmbeddedServer
from feedchat_local.embedded_cluster import RedisClusterNodes
from presence_svc.store import channel
from tests.presence_svc.conftest import Cluster

Start = Callable[..., Awaitable[Cluster]]
RECOVERY_BOUND = 15.0
"""Seconds from the kill until the watcher hears the change: the replica's promotion (when
the node was a master holding the user's keys) plus the hub's reconnect and re-read."""


async def _listening_node(nodes: RedisClusterNodes, user_id: int) -> EmbeddedServer:
    """The node whose pub/sub connections include a subscriber of ``user_id``."""
    for node in nodes.nodes:
        client = aioredis.Redis(host=node.host, port=node.port)
        try:
            [(_, count)] = await client.pubsub_numsub(channel(user_id))
        finally:
            await client.aclose()
        if count:
            return node
    raise AssertionError(f"nobody subscribes to user {user_id}")


async def _come_online(cluster: Cluster, user_id: int, deadline: float) -> None:
    """Open a device stream the way a client does: again after UNAVAILABLE (the killed
    node may have held the user's keys until its replica takes over)."""
    while True:
        device = await cluster.connect(1, user_id)
        try:
            await device.snapshot(timeout=max(0.1, deadline - time.monotonic()))
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await device.shut()
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("redis_url", ["node"], indirect=True)  # unused: own cluster below
async def test_watcher_hears_a_change_made_after_its_pubsub_node_died(
    private_redis_cluster: RedisClusterNodes, start_cluster: Start
) -> None:
    cluster = await start_cluster(redis_url=private_redis_cluster.url)
    watcher = await cluster.connect(0, 1)
    await watcher.snapshot()
    watcher.watch([2])
    await watcher.snapshot()
    victim = await _listening_node(private_redis_cluster, 2)
    victim.kill()
    killed_at = time.monotonic()
    await _come_online(cluster, 2, killed_at + RECOVERY_BOUND)  # through the other instance
    change = await watcher.change(timeout=RECOVERY_BOUND)
    took = time.monotonic() - killed_at
    print(f"\npub/sub node killed -> watcher heard the change in {took:.2f} s")
    assert (change.user_id, change.status) == (2, pb.PRESENCE_STATUS_ONLINE)
    assert took < RECOVERY_BOUND

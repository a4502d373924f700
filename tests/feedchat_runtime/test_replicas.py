"""Replica acks against a real Redis Cluster: a WAIT that a node refuses (during a failover
a stale master may have just turned replica) counts as no replica confirming, so the write
is UNAVAILABLE ``REPLICA_ACK_TIMEOUT`` for the client to retry, never INTERNAL."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from feedchat_local.embedded_cluster import RedisClusterNodes
from feedchat_runtime.errors import Unavailable
from feedchat_runtime.replicas import REASON, ReplicaAcks


async def test_a_wait_refused_by_a_replica_counts_as_unconfirmed(
    redis_cluster: RedisClusterNodes,
) -> None:
    masters = {n.port for n in redis_cluster.nodes[: redis_cluster.masters]}
    replica = next(n for n in redis_cluster.nodes if n.port not in masters)
    client = aioredis.Redis(host=replica.host, port=replica.port)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("WAIT", 1, 100)
        replies = await pipe.execute(raise_on_error=False)
    finally:
        await client.aclose()
    assert isinstance(replies[0], Exception)  # what a failover can answer
    with pytest.raises(Unavailable) as caught:
        ReplicaAcks(1, 100).check(replies, 1, "post 7")
    assert caught.value.reason == REASON

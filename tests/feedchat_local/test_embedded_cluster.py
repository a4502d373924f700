"""Multi-node stores from the pip binaries: a 3-member etcd loses a member and no service
notices; a Redis Cluster loses a master and its replica takes over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from feedchat_local.embedded_cluster import EtcdMembers, RedisClusterNodes
from feedchat_runtime.registry import EtcdSession, Member, Registration, list_members
from feedchat_runtime.snowflake import WorkerIdClaim
from tests.waiting import wait_until


@pytest.fixture
def etcd_members(tmp_path: Path) -> Iterator[EtcdMembers]:
    members = EtcdMembers(tmp_path / "etcd", size=3)
    members.start()
    yield members
    members.stop()


async def _registered(endpoints: str, prefix: str) -> set[str]:
    reader = EtcdSession(endpoints, prefix)
    try:
        return {m.instance for m in await list_members(reader.client, prefix, "demo")}
    finally:
        await reader.client.close()


@pytest.mark.parametrize("role", ["leader", "follower"])
async def test_killing_one_member_keeps_registration_and_ids_flowing(
    etcd_members: EtcdMembers, etcd_prefix: str, role: str
) -> None:
    # The default --lease-ttl: a leader's loss stalls lease renewals for the election
    # (about 1-2 s here), well inside the TTL - margin (4 s) that a claim is trusted for.
    ttl = 5
    session = EtcdSession(etcd_members.endpoints, etcd_prefix, ttl=ttl)
    await session.start()
    try:
        await Registration(session, Member("demo", "steady", "127.0.0.1:9", "v")).register()
        claim = WorkerIdClaim(session)
        await claim.acquire()
        ids = claim.generator()
        last = ids.next_id()

        leader = etcd_members.leader()
        victim = leader if role == "leader" else (leader + 1) % 3
        etcd_members.members[victim].kill()
        survivors = ",".join(m.address for i, m in enumerate(etcd_members.members) if i != victim)
        # Two lease TTLs: a lost keep-alive would have dropped the key and the claim.
        until = time.monotonic() + 2 * ttl
        while time.monotonic() < until:
            issued = ids.next_id()  # raises Unavailable if the worker claim lapsed
            assert issued > last
            last = issued
            await asyncio.sleep(0.1)
        assert await _registered(survivors, etcd_prefix) == {"steady"}
    finally:
        await session.close()


async def test_redis_cluster_forms_and_a_replica_takes_over_a_killed_master(
    tmp_path: Path,
) -> None:
    nodes = RedisClusterNodes(tmp_path / "redis", masters=3, replicas=1)
    nodes.start()
    try:
        startup = [n.address.split(":") for n in nodes.nodes[: nodes.masters]]
        client = RedisCluster(startup_nodes=[ClusterNode(h, int(p)) for h, p in startup])
        try:
            for i in range(30):  # keys on every master
                await client.set(f"key-{i}", i)
            victim = nodes.master_of("key-7")
            victim.kill()
            started = time.monotonic()
            while True:
                try:
                    await client.set("key-7", "after failover")
                    break
                except (RedisClusterException, RedisError):
                    assert time.monotonic() - started < 15, "no replica took over"
                    await asyncio.sleep(0.2)
            # The nodes' views converge by gossip: the one asked may lag the client's.
            await wait_until(
                lambda: nodes.master_of("key-7") is not victim,
                timeout=15,
                what="the replica promoted in every node's view",
            )
            assert await client.get("key-7") == b"after failover"
            assert await client.get("key-8") == b"8"
        finally:
            await client.aclose()
    finally:
        nodes.stop()

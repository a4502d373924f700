"""The stores' topology as `feedchat status` shows it: etcd members and Redis nodes.

etcd answers for itself (its member list and leader). The Redis URL the services were
given is recorded by `feedchat up` under ``<prefix>/stores/redis`` (and removed when it
stops); for a Redis Cluster the nodes, their roles and slots are read live with
``CLUSTER NODES`` from the first node of the URL that answers.
"""

from __future__ import annotations

import contextlib

import aetcd
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from feedchat_runtime.redis_client import cluster_nodes, is_cluster

REDIS_URL_KEY = "stores/redis"


def _key(prefix: str) -> bytes:
    return f"{prefix.rstrip('/')}/{REDIS_URL_KEY}".encode()


async def record_redis_url(client: aetcd.Client, prefix: str, url: str) -> None:
    await client.put(_key(prefix), url.encode())


async def forget_redis_url(client: aetcd.Client, prefix: str) -> None:
    await client.delete(_key(prefix))


async def etcd_lines(client: aetcd.Client) -> list[str]:
    """One line per etcd member: name, client URLs, and which one leads."""
    status = await client.status()
    leader = status.leader.id if status.leader is not None else None
    lines = []
    async for member in client.members():
        role = "leader" if member.id == leader else "follower"
        lines.append(f"etcd   {member.name:<10} {','.join(member.client_urls)}  {role}")
    return sorted(lines)


async def redis_lines(url: str) -> list[str]:
    """One line for a single Redis; one per node (role, slots, state) for a cluster."""
    if not is_cluster(url):
        return [f"redis  {url}  (one node)"]
    seeds, user, password = cluster_nodes(url)
    for host, port in seeds:
        node = aioredis.Redis(
            host=host,
            port=port,
            username=user,
            password=password,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        try:
            nodes = await node.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        except (RedisError, OSError):
            continue
        finally:
            with contextlib.suppress(RedisError, OSError):
                await node.aclose()
        return _cluster_lines(nodes)
    return [f"redis  {url}  (no node answers)"]


def _cluster_lines(nodes: dict[str, dict[str, object]]) -> list[str]:
    by_id = {str(info["node_id"]): address for address, info in nodes.items()}
    lines = []
    for address, info in sorted(nodes.items(), key=lambda item: item[0]):
        flags = str(info["flags"]).replace("myself,", "").split(",")
        state = "FAILED" if "fail" in flags or "fail?" in flags else "ok"
        if "master" in flags:
            ranges = info["slots"]
            assert isinstance(ranges, list)
            slots = ",".join(f"{r[0]}-{r[1]}" if len(r) > 1 else f"{r[0]}" for r in ranges)
            lines.append(f"redis  {address:<21} master   slots {slots or '-'}  {state}")
        else:
            master = by_id.get(str(info["master_id"]), "?")
            lines.append(f"redis  {address:<21} replica  of {master}  {state}")
    return lines


async def topology_lines(client: aetcd.Client, prefix: str) -> list[str]:
    """The etcd members, then the Redis recorded by `feedchat up` (if any)."""
    lines = await etcd_lines(client)
    found = await client.get(_key(prefix))
    if found is not None:
        lines += await redis_lines(found.value.decode())
    return lines

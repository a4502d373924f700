"""The Redis client every service uses: one node or a Redis Cluster, from one URL.

``--redis-url`` names either topology:

- ``redis://host:port/db`` or ``unix:///path/to/socket`` -- one Redis node;
- ``redis+cluster://[user:password@]host:port,host:port,...`` -- a Redis Cluster, named by
  some of its nodes (any reachable one is enough to discover the rest; more than one
  lets a client start while one of them is down).

:func:`connect_any` builds the client for either (redis-py's asyncio ``Redis`` or
``RedisCluster``); every service uses it (account, chat, feed, presence, notify: their
stores are slot-safe). :func:`connect` is a one-node client that refuses a cluster URL at
start-up, in one line, for code that needs one node (benchmarks' baselines).

redis-py's synchronous client packs commands with hiredis' C packer, but its asyncio
connection packs them in Python, re-joining a growing buffer for every argument. A fanout
batch script carries thousands of key and channel arguments, which made packing the
largest cost of a fanout (about 29 ms for 30,000 arguments against 5 ms with hiredis).
The connection classes here only swap the packer; everything else is redis-py's. The
cluster client gets them too: ``RedisCluster`` takes no connection class, so
:class:`HiredisRedisCluster` sets it in the connection settings its nodes are built from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias
from urllib.parse import unquote

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    UnixDomainSocketConnection,
)
from redis.crc import key_slot

from feedchat_runtime.config import ConfigError

CLUSTER_SCHEME = "redis+cluster://"

RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"
"""What :func:`connect_any` returns: the stores that run on both topologies take this."""


def _pack(args: tuple[Any, ...]) -> list[bytes]:
    # Like redis-py: a command name given as 'SCRIPT LOAD' goes out as two arguments.
    first = args[0]
    if isinstance(first, str):
        args = (*first.encode().split(), *args[1:])
    elif b" " in first:
        args = (*first.split(), *args[1:])
    return [hiredis.pack_command(args)]


class HiredisPackingConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class HiredisPackingUnixConnection(UnixDomainSocketConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


def connection_class(url: str) -> type[AbstractConnection]:
    """The hiredis-packing connection class for ``url`` (redis:// or unix://)."""
    if url.startswith("unix://"):
        return HiredisPackingUnixConnection
    return HiredisPackingConnection


class HiredisRedisCluster(RedisCluster):
    """redis-py's asyncio cluster client with the hiredis packer on every connection.

    The constructor fixes the connection class in the settings it builds nodes from (the
    dict shared with its nodes manager, which builds every node discovered later) and in
    the startup nodes it already built; both are replaced here before any connection opens.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nodes_manager.connection_kwargs["connection_class"] = HiredisPackingConnection
        for node in self.startup_nodes:
            node.connection_class = HiredisPackingConnection


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The ``(host, port)`` seeds, user and password of a ``redis+cluster://`` URL."""
    rest = url[len(CLUSTER_SCHEME) :].rstrip("/")
    user = password = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        name, _, secret = credentials.partition(":")
        user, password = unquote(name) or None, unquote(secret) or None
    seeds = []
    for part in rest.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--redis-url {CLUSTER_SCHEME}... takes host:port,host:port; got {part!r}"
            )
        seeds.append((host.strip("[]"), int(port)))
    return seeds, user, password


DEFAULT_MAX_CONNECTIONS = 100
"""Connections one single-node client opens at most (redis-py's own default)."""
POOL_TIMEOUT = 10.0
"""Seconds a caller waits for a free connection before the call fails."""


def connect_any(
    url: str,
    *,
    max_connections: int | None = None,
    pool_timeout: float | None = None,
    **options: Any,
) -> RedisClient:
    """A client for ``url`` -- one node or a cluster -- with the hiredis packer.

    ``max_connections`` bounds the connections (per node on a cluster; 100 on one node);
    a single-node client waits up to ``pool_timeout`` (10 s) for a free one instead of
    failing (a burst of callers queues instead of opening hundreds). ``options`` are
    redis-py connection settings (timeouts, health checks, ...) for either topology.
    """
    if is_cluster(url):
        seeds, user, password = cluster_nodes(url)
        if max_connections is not None:
            options["max_connections"] = max_connections
        return HiredisRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds],
            username=user,
            password=password,
            **options,
        )
    # A burst of callers queues for a free connection: redis-py's plain pool (100) fails
    # the caller that finds it empty instead (MaxConnectionsError, which a service must
    # answer UNAVAILABLE), as a burst of feed reads right after a Redis wipe did.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections or DEFAULT_MAX_CONNECTIONS,
        timeout=POOL_TIMEOUT if pool_timeout is None else pool_timeout,
        connection_class=connection_class(url),
        **options,
    )
    return aioredis.Redis.from_pool(pool)


async def open_pubsub(client: RedisClient, attempt: int = 0) -> PubSub:
    """A pub/sub connection of ``client`` (either topology), not yet subscribed.

    On a cluster a published message reaches every node, so any node will do: it is node
    number ``attempt`` of the ones the client knows (after reading the slot map, which
    redis-py's cluster pub/sub needs first). A caller whose connection broke asks again
    with the next ``attempt`` and so moves off a dead node at once, where reconnecting to
    the same node would wait for a node that may not come back.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        nodes = sorted(client.get_nodes(), key=lambda node: node.name)
        return client.pubsub(node=nodes[attempt % len(nodes)])
    return client.pubsub()


def slot_groups(client: RedisClient, keys: Sequence[str]) -> list[list[int]]:
    """Positions of ``keys`` grouped so that one script may take each group's keys: all of
    them together on one node; one group per hash slot on a cluster (no script touches
    two slots). A pipeline of the groups' calls then goes to each node in one round trip
    (redis-py's cluster pipeline sends every node its commands at once)."""
    if not keys:
        return []
    if not isinstance(client, RedisCluster):
        return [list(range(len(keys)))]
    groups: dict[int, list[int]] = {}
    for at, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(at)
    return list(groups.values())


def node_name(client: RedisClient, key: str) -> str:
    """The node that holds ``key`` ("" on one Redis). A cluster client must know the slot
    map (:meth:`feedchat_runtime.replicas.ReplicaAcks.ready`)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)
        return node.name if node is not None else ""
    return ""


async def mget(client: RedisClient, keys: Sequence[str]) -> list[Any]:
    """GET of many keys in one round trip per node (MGET on one node; per slot on a
    cluster, where one MGET may not span slots)."""
    if not keys:
        return []
    if isinstance(client, RedisCluster):
        return list(await client.mget_nonatomic(list(keys)))
    return list(await client.mget(list(keys)))


async def mset(client: RedisClient, values: Mapping[str, Any]) -> None:
    """SET of many keys (MSET on one node; per slot on a cluster)."""
    if not values:
        return
    if isinstance(client, RedisCluster):
        await client.mset_nonatomic(dict(values))
    else:
        await client.mset(dict(values))


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A one-node client for ``url`` (code that needs one node).

    Refuses a ``redis+cluster://`` URL with a :class:`ConfigError` naming the reason.
    """
    if is_cluster(url):
        raise ConfigError(
            "this service does not run on Redis Cluster yet (its scripts span hash slots); "
            "give it a redis:// or unix:// --redis-url"
        )
    return aioredis.Redis.from_url(url, connection_class=connection_class(url), **options)

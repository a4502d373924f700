"""The one Redis client factory: a URL names one node or a cluster; both pack commands with
hiredis; a service not yet on a cluster refuses a cluster URL in one line."""

from __future__ import annotations

import pytest

from feedchat_local.embedded import EmbeddedServer
from feedchat_local.embedded_cluster import RedisClusterNodes
from feedchat_runtime.config import ConfigError
from feedchat_runtime.redis_client import (
    HiredisPackingConnection,
    HiredisRedisCluster,
    cluster_nodes,
    connect,
    connect_any,
)


async def test_cluster_url_gives_a_cluster_client_whose_every_connection_packs_with_hiredis(
    redis_cluster: RedisClusterNodes,
) -> None:
    client = connect_any(redis_cluster.url)
    try:
        assert isinstance(client, HiredisRedisCluster)
        for i in range(30):  # keys on every master
            await client.set(f"factory-{i}", i)
            assert await client.get(f"factory-{i}") == str(i).encode()
        nodes = client.get_nodes()
        assert len({n.name for n in client.get_primaries()}) == 3
        used = [c for n in nodes for c in n._connections]
        assert used and all(isinstance(c, HiredisPackingConnection) for c in used)
    finally:
        await client.aclose()


async def test_node_url_gives_a_one_node_client(redis_server_proc: EmbeddedServer) -> None:
    client = connect_any(
        f"redis://{redis_server_proc.address}/0", max_connections=4, pool_timeout=1
    )
    try:
        assert await client.ping()
        assert not isinstance(client, HiredisRedisCluster)
    finally:
        await client.aclose()


def test_cluster_url_takes_seeds_and_credentials() -> None:
    assert cluster_nodes("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001/") == (
        [("10.0.0.1", 7000), ("::1", 7001)],
        "u",
        "p@ss",
    )
    with pytest.raises(ConfigError, match="host:port"):
        cluster_nodes("redis+cluster://10.0.0.1")


def test_a_service_not_on_a_cluster_yet_refuses_a_cluster_url() -> None:
    with pytest.raises(ConfigError, match="does not run on Redis Cluster yet"):
        connect("redis+cluster://127.0.0.1:7000")

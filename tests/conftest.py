"""Session-wide real servers: one etcd, one Redis and one PostgreSQL on free ports in
temporary folders, and (for the suites that run on both Redis topologies) a Redis Cluster
of 3 masters with a replica each, started the first time a test asks for it.

Each test gets a fresh key space: Redis is flushed before it, it gets its own etcd prefix,
and its own empty PostgreSQL schema (the services migrate it on start), so tests never see
each other's registrations, worker ids or rows.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from feedchat_local.embedded import (
    EmbeddedServer,
    etcd_server,
    postgres_server,
    postgres_url,
    redis_server,
)
from feedchat_local.embedded_cluster import RedisClusterNodes
from feedchat_runtime.config import ServiceConfig, load_config
from feedchat_runtime.redis_client import RedisClient, connect_any
from tests.tempdirs import outside_pytest_tmp

TOPOLOGIES = ("node", "cluster")
"""The values of ``redis_url``'s parameter: one Redis node, or the 3-master cluster."""


def run_on_both_topologies(metafunc: pytest.Metafunc) -> None:
    """For a suite's ``pytest_generate_tests``: every test that uses Redis runs twice,
    on one node (``[node]``) and on the Redis Cluster (``[cluster]``)."""
    if "redis_url" in metafunc.fixturenames and not any(
        "redis_url" in marker.args[0] for marker in metafunc.definition.iter_markers("parametrize")
    ):
        metafunc.parametrize("redis_url", TOPOLOGIES, indirect=True)


_counter = itertools.count()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = etcd_server(tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """An etcd of the test's own, which the test may stop, wipe and restart."""
    server = etcd_server(tmp_path / "etcd-private")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = redis_server(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """3 masters with one replica each (started on first use, shared by the session)."""
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"), masters=3, replicas=1)
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture
def private_redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A Redis Cluster (3 masters, 1 replica each) of the test's own, whose nodes it may
    kill."""
    nodes = RedisClusterNodes(tmp_path / "redis-cluster", masters=3, replicas=1)
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis the test's services use: one node unless parametrized with "cluster"
    (see :func:`run_on_both_topologies`)."""
    if getattr(request, "param", "node") == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        return cluster.url
    server: EmbeddedServer = request.getfixturevalue("redis_server_proc")
    return f"redis://{server.address}/0"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    """A client on a freshly flushed Redis (every master of a cluster)."""
    client = connect_any(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def postgres_proc() -> Iterator[EmbeddedServer]:
    with outside_pytest_tmp() as folder:
        server = postgres_server(folder, durable=False)
        server.start()
        yield server
        server.stop()


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedServer]:
    """A PostgreSQL of the test's own, which the test may stop and restart."""
    with outside_pytest_tmp() as folder:
        server = postgres_server(folder, durable=False)
        server.start()
        yield server
        server.stop()


async def _admin(server: EmbeddedServer) -> asyncpg.Connection:
    return await asyncpg.connect(postgres_url(server))


@pytest.fixture
async def database_url(postgres_proc: EmbeddedServer) -> AsyncIterator[str]:
    """The URL of a fresh, empty schema of the test's own (dropped after the test).

    The schema rides in the URL as ``search_path``, so every connection a service opens
    works inside it; the query string is how the services take it too.
    """
    schema = f"t{next(_counter)}"
    admin = await _admin(postgres_proc)
    await admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres_url(postgres_proc)}?search_path={schema}"
    await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    await admin.close()


@pytest.fixture
def etcd_prefix() -> str:
    return f"/feedchat-test/{next(_counter)}"


@pytest.fixture
def make_config(
    etcd: EmbeddedServer, redis_url: str, etcd_prefix: str, database_url: str
) -> Callable[..., Any]:
    """Build a service config pointing at the test etcd, Redis, PostgreSQL schema and this
    test's prefix."""

    def build(cls: type[ServiceConfig] = ServiceConfig, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "etcd": etcd.address,
            "etcd_prefix": etcd_prefix,
            "redis_url": redis_url,
            "postgres_url": database_url,
            "lease_ttl": 2,
            "grace": 2.0,
            "dev": True,
            "log_format": "text",
        }
        values.update(overrides)
        return load_config(cls, [], env={}, **values)

    return build


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent

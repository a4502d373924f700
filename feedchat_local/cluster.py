"""`feedchat up`: the whole system on one machine, supervised.

Starts etcd, Redis and PostgreSQL (embedded binaries, or external addresses), then every
installed feedchat service in its own process. A child that exits on its own is restarted
with exponential backoff and logged; Ctrl-C (or SIGTERM) stops the services first (each
deregisters and drains), then PostgreSQL, Redis and etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from redis.exceptions import RedisError

from feedchat_local.embedded import (
    EmbeddedServer,
    etcd_server,
    postgres_server,
    postgres_url,
    redis_server,
)
from feedchat_local.embedded_cluster import EtcdMembers, RedisClusterNodes
from feedchat_local.services import SERVICES, ServiceSpec
from feedchat_local.topology import forget_redis_url, record_redis_url
from feedchat_runtime.redis_client import is_cluster
from feedchat_runtime.registry import EtcdSession, Member, list_members

logger = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
SECRET_NAMES = ("FEEDCHAT_AUTH_SECRET", "FEEDCHAT_SERVICE_SECRET", "FEEDCHAT_WEBHOOK_SECRET")
HEALTHY_AFTER = 60.0
DATABASE = "feedchat"
"""The database the embedded PostgreSQL holds the record in."""


@dataclass(frozen=True)
class ClusterConfig:
    """What `feedchat up` starts and where."""

    data_dir: Path
    """Folder for etcd and Redis data, logs and the generated secrets; kept between runs."""
    host: str = "127.0.0.1"
    """Interface every server listens on."""
    etcd: str = ""
    """External etcd host:port; empty starts the embedded one on etcd_port."""
    etcd_port: int = 2379
    redis_url: str = ""
    """External Redis URL; empty starts the embedded one on redis_port."""
    redis_port: int = 6379
    postgres_url: str = ""
    """External PostgreSQL URL; empty starts the embedded one on postgres_port."""
    postgres_port: int = 5432
    etcd_prefix: str = "/feedchat"
    chat_servers: int = 3
    """How many chat server processes."""
    only: tuple[str, ...] = ()
    """Start only these services (registry names); empty means all installed."""
    port_offset: int = 0
    """Added to every service's local port (two clusters on one machine)."""
    etcd_members: int = 1
    """Members of the embedded etcd; more than 1 starts a static cluster on consecutive
    ports from etcd_port (client and peer port per member)."""
    fsync: str = "everysec"
    """The embedded Redis's ``appendfsync``: ``everysec`` or ``always``."""
    redis_cluster: int = 0
    """Masters of an embedded Redis Cluster, one replica each, on 2N consecutive ports from
    redis_port (cluster bus: port + 10000); 0 starts one Redis."""


class StartupError(RuntimeError):
    """`feedchat up` cannot start: the message is one line naming the cause and the log."""


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _start(server: EmbeddedServer, what: str) -> None:
    """Start one store with a progress line; any failure becomes one StartupError line."""
    if _port_taken(server.host, server.port):
        raise StartupError(
            f"{what} port {server.port} on {server.host} is already in use (another "
            f"`feedchat up`? give --port-offset N, or --{server.name}-port); "
            f"{what}'s log: {server.log_path}"
        )
    print(f"starting {what} on {server.address} ...", end=" ", flush=True)
    began = time.monotonic()
    try:
        server.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        print("failed", flush=True)
        raise StartupError(f"{what} did not start ({exc}); see {server.log_path}") from exc
    print(f"ok ({time.monotonic() - began:.1f}s)", flush=True)


@dataclass
class Child:
    """One supervised service process."""

    spec: ServiceSpec
    index: int
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started: float = field(default=0.0)

    @property
    def label(self) -> str:
        return f"{self.spec.name}-{self.index}"

    async def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: ASYNC230 - handed to the child, instant
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        self.started = time.monotonic()

    async def stop(self, timeout: float) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


def _secrets(data_dir: Path) -> dict[str, str]:
    """Signing keys for this local cluster: generated once, kept in the data folder."""
    path = data_dir / "secrets.env"
    existing = path.read_text() if path.exists() else ""
    pairs = dict(line.split("=", 1) for line in existing.splitlines() if "=" in line)
    missing = [name for name in SECRET_NAMES if name not in pairs]
    if missing:  # a data folder from an older version gains the newer keys
        pairs.update({name: secrets.token_hex(32) for name in missing})
        path.write_text("".join(f"{key}={value}\n" for key, value in pairs.items()))
        path.chmod(0o600)
    return pairs


class Cluster:
    """The supervisor behind `feedchat up`."""

    def __init__(self, config: ClusterConfig, base_env: dict[str, str]) -> None:
        self.config = config
        self.base_env = base_env
        self.etcd: EmbeddedServer | None = None
        self.etcd_cluster: EtcdMembers | None = None
        self.redis: EmbeddedServer | None = None
        self.redis_nodes: RedisClusterNodes | None = None
        self.postgres: EmbeddedServer | None = None
        self.children: list[Child] = []
        self._stopping = asyncio.Event()

    @property
    def etcd_address(self) -> str:
        if self.config.etcd:
            return self.config.etcd
        if self.etcd_cluster is not None:
            return self.etcd_cluster.endpoints
        return self.etcd.address if self.etcd else ""

    @property
    def redis_url(self) -> str:
        if self.config.redis_url:
            return self.config.redis_url
        if self.redis_nodes is not None:
            return self.redis_nodes.url
        return f"redis://{self.redis.address}/0" if self.redis else ""

    @property
    def on_redis_cluster(self) -> bool:
        return self.config.redis_cluster > 0 or is_cluster(self.config.redis_url)

    @property
    def postgres_url(self) -> str:
        if self.config.postgres_url:
            return self.config.postgres_url
        return postgres_url(self.postgres, DATABASE) if self.postgres else ""

    def specs(self) -> list[ServiceSpec]:
        chosen = [s for s in SERVICES if s.available()]
        if self.config.only:
            unknown = set(self.config.only) - {s.name for s in SERVICES}
            if unknown:
                raise SystemExit(f"unknown service(s): {', '.join(sorted(unknown))}")
            chosen = [s for s in chosen if s.name in self.config.only]
        if self.on_redis_cluster:
            chosen = [s for s in chosen if s.redis_cluster]
        return chosen

    def left_out(self) -> list[str]:
        """Installed services not started because they do not run on Redis Cluster yet."""
        if not self.on_redis_cluster:
            return []
        return [
            s.name
            for s in SERVICES
            if s.available()
            and not s.redis_cluster
            and (not self.config.only or s.name in self.config.only)
        ]

    def start_stores(self) -> None:
        data = self.config.data_dir
        if not self.config.postgres_url:
            _set_aside_pre_postgres_data(data)
        (data / "logs").mkdir(parents=True, exist_ok=True)
        self._check_service_ports()
        if not self.config.etcd and self.config.etcd_members > 1:
            self.etcd_cluster = EtcdMembers(
                data / "etcd-cluster",
                self.config.etcd_members,
                self.config.host,
                self.config.etcd_port,
            )
            for index, member in enumerate(self.etcd_cluster.plan()):
                _start(member, f"etcd member {index}")
            try:
                self.etcd_cluster.wait_healthy()
            except TimeoutError as exc:
                raise StartupError(
                    f"the etcd cluster did not form ({exc}); see "
                    f"{self.etcd_cluster.members[0].log_path}"
                ) from exc
        elif not self.config.etcd:
            self.etcd = etcd_server(data, self.config.host, self.config.etcd_port)
            _start(self.etcd, "etcd")
        if not self.config.redis_url and self.config.redis_cluster:
            self._start_redis_cluster(data / "redis-cluster")
        elif not self.config.redis_url:
            self.redis = redis_server(
                data / "redis", self.config.host, self.config.redis_port, fsync=self.config.fsync
            )
            _start(self.redis, "Redis")
        if not self.config.postgres_url:
            self.postgres = postgres_server(
                data / "postgres", self.config.host, self.config.postgres_port
            )
            _start(self.postgres, "PostgreSQL")

    def _start_redis_cluster(self, folder: Path) -> None:
        """N masters and N replicas; a folder with a formed cluster restarts as it is."""
        masters = self.config.redis_cluster
        shape = folder / "masters"
        if shape.exists() and shape.read_text().strip() != str(masters):
            raise StartupError(
                f"{folder} holds a Redis Cluster of {shape.read_text().strip()} masters, not "
                f"{masters} (give --redis-cluster {shape.read_text().strip()}, or another "
                "--data-dir)"
            )
        self.redis_nodes = RedisClusterNodes(
            folder,
            masters=masters,
            replicas=1,
            host=self.config.host,
            base_port=self.config.redis_port,
            fsync=self.config.fsync,
        )
        for index, node in enumerate(self.redis_nodes.plan()):
            if _port_taken(node.host, node.port + 10000):
                raise StartupError(
                    f"Redis node {index}'s cluster bus port {node.port + 10000} on "
                    f"{node.host} is already in use (give --redis-port or --port-offset)"
                )
            role = "master" if index < masters else "replica"
            _start(node, f"Redis Cluster node {index} ({role})")
        print(f"joining the Redis Cluster ({masters} masters) ...", end=" ", flush=True)
        try:
            self.redis_nodes.join()
        except (TimeoutError, OSError, RedisError) as exc:
            print("failed", flush=True)
            raise StartupError(
                f"the Redis Cluster did not form ({exc}); see {folder}/node-*/redis.log"
            ) from exc
        shape.write_text(f"{masters}\n")
        print("ok", flush=True)

    def _check_service_ports(self) -> None:
        for spec in self.specs():
            count = self.config.chat_servers if spec.name == "chat" else spec.default_instances
            for index in range(count):
                port = spec.base_port + self.config.port_offset + index
                if _port_taken(self.config.host, port):
                    raise StartupError(
                        f"{spec.name}-{index}'s port {port} on {self.config.host} is already "
                        "in use (another `feedchat up`? give --port-offset N)"
                    )

    async def create_database(self) -> None:
        """Create the embedded PostgreSQL's ``feedchat`` database on the first run."""
        if self.postgres is None:
            return
        conn = await asyncpg.connect(postgres_url(self.postgres), timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                await conn.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await conn.close()

    def plan(self) -> list[Child]:
        env = dict(self.base_env)
        env.update(_secrets(self.config.data_dir))
        children = []
        for spec in self.specs():
            count = self.config.chat_servers if spec.name == "chat" else spec.default_instances
            for index in range(count):
                argv = [
                    sys.executable,
                    "-m",
                    spec.module,
                    "--host",
                    self.config.host,
                    "--port",
                    str(spec.base_port + self.config.port_offset + index),
                    "--instance",
                    f"{spec.name}-{index}",
                    "--etcd",
                    self.etcd_address,
                    "--etcd-prefix",
                    self.config.etcd_prefix,
                    "--redis-url",
                    self.redis_url,
                    "--postgres-url",
                    self.postgres_url,
                ]
                log_path = self.config.data_dir / "logs" / f"{spec.name}-{index}.log"
                children.append(Child(spec, index, argv, log_path, env))
        return children

    async def _supervise(self, child: Child) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            await child.start()
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - child.started > HEALTHY_AFTER:
                backoff = 1.0
            child.restarts += 1
            logger.warning(
                "%s exited with %s; restarting in %.0fs (log: %s)",
                child.label,
                code,
                backoff,
                child.log_path,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def wait_registered(self, timeout: float = 30.0) -> list[Member]:
        """Poll etcd until every planned process is registered (or the timeout)."""
        session = EtcdSession(self.etcd_address, self.config.etcd_prefix)
        await session.client.connect()
        wanted = {child.label for child in self.children}
        deadline = time.monotonic() + timeout
        try:
            while True:
                members = await list_members(session.client, self.config.etcd_prefix)
                if wanted <= {m.instance for m in members} or time.monotonic() > deadline:
                    return members
                await asyncio.sleep(0.3)
        finally:
            await session.client.close()

    async def record_topology(self, forget: bool = False) -> None:
        """Record (or forget) in etcd the Redis URL the services got, for `feedchat status`."""
        session = EtcdSession(self.etcd_address, self.config.etcd_prefix)
        try:
            await session.client.connect()
            if forget:
                await forget_redis_url(session.client, self.config.etcd_prefix)
            else:
                await record_redis_url(session.client, self.config.etcd_prefix, self.redis_url)
        except Exception as exc:  # noqa: BLE001 - status shows less; nothing else depends on it
            logger.warning("could not record the Redis topology in etcd: %s", exc)
        finally:
            await session.client.close()

    def stop_stores(self) -> None:
        if self.redis_nodes is not None:
            self.redis_nodes.stop()
        for server in (self.postgres, self.redis, self.etcd):
            if server is not None:
                server.stop()
        if self.etcd_cluster is not None:
            self.etcd_cluster.stop()

    async def run(self) -> int:
        try:
            self.start_stores()
            await self.create_database()
        except BaseException:
            self.stop_stores()  # what did start must not outlive a failed start
            raise
        left_out = self.left_out()
        if left_out:
            print(
                f"not started: {', '.join(left_out)} (they do not run on Redis Cluster "
                "yet: their scripts span hash slots)",
                flush=True,
            )
        await self.record_topology()
        self.children = self.plan()
        tasks = [asyncio.create_task(self._supervise(child)) for child in self.children]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            members = await self.wait_registered()
            print(render_table(members, self.etcd_address, self.redis_url), flush=True)
            missing = {c.label for c in self.children} - {m.instance for m in members}
            if missing:
                print(
                    f"not registered yet: {', '.join(sorted(missing))} "
                    f"(see {self.config.data_dir / 'logs'})",
                    flush=True,
                )
            print("Ctrl-C stops everything.", flush=True)
            await self._stopping.wait()
        finally:
            self._stopping.set()
            print("stopping services...", flush=True)
            await asyncio.gather(*(child.stop(timeout=10.0) for child in self.children))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.record_topology(forget=True)
            self.stop_stores()
            print("stopped.", flush=True)
        return 0


def render_table(members: list[Member], etcd: str, redis_url: str) -> str:
    rows = [("SERVICE", "INSTANCE", "ADDRESS", "METRICS", "PID", "VERSION")]
    rows += [(m.service, m.instance, m.address, m.metrics, str(m.pid), m.version) for m in members]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join([f"etcd {etcd}   redis {redis_url}", *lines])


def _set_aside_pre_postgres_data(data: Path) -> None:
    """A data folder from before PostgreSQL held the record keeps its accounts, graph and
    posts in Redis only; start afresh (old Redis data moved aside) and say so in one line."""
    old_redis = data / "redis"
    if not old_redis.exists() or (data / "postgres").exists():
        return
    aside = data / "redis-before-postgres"
    shutil.rmtree(aside, ignore_errors=True)
    old_redis.rename(aside)
    print(
        f"{data} is from before PostgreSQL became the record: starting with empty data "
        f"(old Redis data moved to {aside}, safe to delete)",
        flush=True,
    )

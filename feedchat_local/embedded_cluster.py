"""Multi-node stores on one machine: a Redis Cluster and an etcd cluster from pip binaries.

:class:`RedisClusterNodes` starts ``masters`` Redis servers in cluster mode, each with
``replicas`` replicas, and forms the cluster with plain CLUSTER commands (no
``redis-cli --cluster``, which the pip package does not ship): ADDSLOTS on each master
(Redis 6.2 has no ADDSLOTSRANGE), MEET, then REPLICATE once every node knows every other.
A data folder that already holds a formed cluster (every node has its ``nodes.conf``) is
started as it is: the nodes find each other again from that file.

:class:`EtcdMembers` starts an etcd cluster of ``size`` members (static bootstrap).

Both expose ``url``/``endpoints`` in the form the services take (``--redis-url``,
``--etcd``), and ``kill``/``start`` of one node for failover tests.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from feedchat_local.embedded import (
    EmbeddedServer,
    etcd_argv,
    etcd_healthy,
    free_port,
    redis_argv,
)
from feedchat_runtime.replies import text

SLOTS = 16384
CLUSTER_URL_SCHEME = "redis+cluster://"


def free_cluster_port(host: str = "127.0.0.1") -> int:
    """A free port whose cluster bus port (+10000) is free too, both below the kernel's
    ephemeral range, so no client socket takes either before the node binds them."""
    for _ in range(200):
        port = random.randrange(10000, 22000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind((host, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of Redis cluster ports")


def redis_cluster_url(addresses: list[str]) -> str:
    """The ``--redis-url`` naming a cluster by some of its nodes."""
    return CLUSTER_URL_SCHEME + ",".join(addresses)


def _cluster_node(data_dir: Path, host: str, port: int, fsync: str) -> EmbeddedServer:
    cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    argv = redis_argv(
        data_dir,
        host,
        port,
        appendonly=True,
        fsync=fsync,
        extra=[*cluster, "--cluster-node-timeout", "2000"],
    )
    return EmbeddedServer("redis", host, port, data_dir, argv, data_dir / "redis.log")


@dataclass
class RedisClusterNodes:
    """``masters`` masters with ``replicas`` replicas each, on consecutive data folders."""

    data_dir: Path
    masters: int = 3
    replicas: int = 1
    host: str = "127.0.0.1"
    base_port: int = 0
    """First node's port (the others follow); 0 picks free ports."""
    fsync: str = "everysec"
    nodes: list[EmbeddedServer] = field(default_factory=list)
    _formed: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return redis_cluster_url([n.address for n in self.nodes[: self.masters]])

    def plan(self) -> list[EmbeddedServer]:
        """The nodes (not started), kept in ``nodes``; notes whether the data folder
        already holds a formed cluster (every node has its ``nodes.conf``)."""
        if self.nodes:
            return self.nodes
        count = self.masters * (1 + self.replicas)
        ports = (
            [self.base_port + i for i in range(count)]
            if self.base_port
            else [free_cluster_port(self.host) for _ in range(count)]
        )
        self.nodes = [
            _cluster_node(self.data_dir / f"node-{i}", self.host, port, self.fsync)
            for i, port in enumerate(ports)
        ]
        self._formed = all((n.data_dir / "nodes.conf").exists() for n in self.nodes)
        return self.nodes

    def start(self, timeout: float = 30.0) -> None:
        for node in self.plan():
            node.start()
        self.join(timeout)

    def join(self, timeout: float = 30.0) -> None:
        """Once every planned node runs: form the cluster if the folder was new, then wait
        until it is ok (a formed cluster's nodes find each other from ``nodes.conf``)."""
        if not self._formed:
            self._form(timeout)
            self._formed = True
        self.wait_ok(timeout)

    def _client(self, node: EmbeddedServer) -> redis.Redis:
        return redis.Redis(host=node.host, port=node.port, socket_timeout=5)

    def _form(self, timeout: float) -> None:
        per_master = SLOTS // self.masters
        masters, others = self.nodes[: self.masters], self.nodes[self.masters :]
        for index, node in enumerate(masters):
            first = index * per_master
            last = SLOTS if index == self.masters - 1 else first + per_master
            with self._client(node) as client:
                client.execute_command("CLUSTER ADDSLOTS", *range(first, last))
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            with self._client(node) as client:
                client.execute_command("CLUSTER MEET", seed.host, seed.port)
        ids = []
        for node in masters:
            with self._client(node) as client:
                found = client.execute_command("CLUSTER MYID")
                ids.append(text(found))
        deadline = time.monotonic() + timeout
        for node in others:  # a replica needs to know its master before REPLICATE
            with self._client(node) as client:
                while len(client.execute_command("CLUSTER NODES")) < len(self.nodes):
                    if time.monotonic() > deadline:
                        raise TimeoutError("Redis cluster nodes did not meet")
                    time.sleep(0.05)
        for index, node in enumerate(others):
            with self._client(node) as client:
                client.execute_command("CLUSTER REPLICATE", ids[index % self.masters])

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok`` and every replica is linked."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with self._client(node) as client:
                while True:
                    info = client.execute_command("CLUSTER INFO")
                    role = client.execute_command("ROLE")
                    linked = role[0] != b"slave" or role[3] == b"connected"
                    if info.get("cluster_state") == "ok" and linked:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"Redis cluster node {node.address} is not ok")
                    time.sleep(0.05)

    def master_of(self, key: str) -> EmbeddedServer:
        """The node serving ``key``'s slot, as the first running node sees it now."""
        alive = next(n for n in self.nodes if n.process is not None and n.process.poll() is None)
        with self._client(alive) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for first, last, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if int(first) <= slot <= int(last):
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class EtcdMembers:
    """An etcd cluster of ``size`` members bootstrapped statically."""

    data_dir: Path
    size: int = 3
    host: str = "127.0.0.1"
    base_port: int = 0
    """First member's client port; member i uses base+2i (client) and base+2i+1 (peer)."""
    members: list[EmbeddedServer] = field(default_factory=list)

    @property
    def endpoints(self) -> str:
        """``--etcd`` for the services: every member's client address."""
        return ",".join(m.address for m in self.members)

    def plan(self) -> list[EmbeddedServer]:
        """The members (not started), kept in ``members``."""
        if self.members:
            return self.members
        ports = (
            [(self.base_port + 2 * i, self.base_port + 2 * i + 1) for i in range(self.size)]
            if self.base_port
            else [(free_port(self.host), free_port(self.host)) for _ in range(self.size)]
        )
        initial = ",".join(
            f"etcd-{i}=http://{self.host}:{peer}" for i, (_, peer) in enumerate(ports)
        )
        members = []
        for i, (client, peer) in enumerate(ports):
            folder = self.data_dir / f"etcd-{i}"
            extra = ["--initial-cluster-token", "feedchat-etcd", "--initial-cluster-state", "new"]
            argv = etcd_argv(f"etcd-{i}", folder / "data", self.host, client, peer, initial, extra)
            members.append(
                EmbeddedServer("etcd", self.host, client, folder, argv, folder / "etcd.log")
            )
        self.members = members
        return members

    def start(self, timeout: float = 30.0) -> None:
        for member in self.plan():
            member.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running member serves requests (the cluster has a leader)."""
        deadline = time.monotonic() + timeout
        for member in self.members:
            if member.process is None or member.process.poll() is not None:
                continue
            while not etcd_healthy(member.host, member.port):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd member {member.address} is not healthy")
                time.sleep(0.05)

    def leader(self) -> int:
        """Index of the member that is the raft leader now (asked over the HTTP gateway)."""
        for index, member in enumerate(self.members):
            if member.process is None or member.process.poll() is not None:
                continue
            status = httpx.post(
                f"http://{member.address}/v3/maintenance/status", json={}, timeout=5
            ).json()
            if status["header"]["member_id"] == status["leader"]:
                return index
        raise LookupError("no etcd member reports itself leader")

    def stop(self) -> None:
        for member in self.members:
            member.stop()

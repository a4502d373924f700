"""Replicated acknowledgements: a write is acknowledged only once Redis replicas hold it.

Redis replicates asynchronously: a master that dies right after answering a write can take
that write with it, and the replica promoted in its place never had it. ``WAIT n ms``
blocks the connection that made the writes until ``n`` replicas confirmed everything it
wrote, or ``ms`` passed, and answers how many did. :class:`ReplicaAcks` appends one WAIT
per node written to the same pipeline as the writes (WAIT counts the writes of its own
connection, and a pipeline sends each node's commands on one connection), and
:meth:`ReplicaAcks.check` turns a shortfall into UNAVAILABLE ``REPLICA_ACK_TIMEOUT``: the
write was made on the master but is not known to survive its crash, and the caller
retries with the same request id (the write is idempotent).

``--replica-acks 0`` (the default) adds nothing. On one Redis node without replicas any
other value refuses every such write, by design: the operator asked for a copy that does
not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from feedchat_runtime.config import ServiceConfig
from feedchat_runtime.errors import Unavailable
from feedchat_runtime.redis_client import RedisClient

REASON = "REPLICA_ACK_TIMEOUT"


@dataclass(frozen=True)
class ReplicaAcks:
    replicas: int
    """Replicas that must confirm (0: do not wait)."""
    wait_ms: int

    @classmethod
    def from_config(cls, config: ServiceConfig) -> ReplicaAcks:
        return cls(config.replica_acks, config.replica_wait_ms)

    async def ready(self, client: RedisClient) -> None:
        """Before :meth:`add_waits`: a cluster client reads its slot map (once)."""
        if self.replicas > 0 and isinstance(client, RedisCluster):
            await client.initialize()

    def add_waits(self, pipe: Any, client: RedisClient, keys: Sequence[str]) -> int:
        """Append a WAIT for every node holding one of ``keys`` (written earlier in
        ``pipe``); the number appended (0 when off), whose replies end the pipeline's."""
        if self.replicas <= 0:
            return 0
        if not isinstance(client, RedisCluster):
            pipe.execute_command("WAIT", self.replicas, self.wait_ms)
            return 1
        nodes = {}
        for key in keys:
            node = client.get_node_from_key(key)
            if node is None:  # no slot map: no write either, so nothing to wait for
                continue
            nodes[node.name] = node
        for node in nodes.values():
            pipe.execute_command("WAIT", self.replicas, self.wait_ms, target_nodes=node)
        return len(nodes)

    def check(self, replies: Sequence[Any], waits: int, what: str) -> None:
        """Raise UNAVAILABLE unless each of the last ``waits`` replies counts enough
        replicas."""
        if waits <= 0:
            return
        confirmed = min(_count(r) for r in replies[-waits:])
        if confirmed < self.replicas:
            raise Unavailable(
                f"{what} was written but {confirmed} of {self.replicas} Redis replicas "
                f"confirmed it within {self.wait_ms} ms; retry with the same request id",
                reason=REASON,
                metadata={
                    "replicas_confirmed": str(confirmed),
                    "replicas_wanted": str(self.replicas),
                    "wait_ms": str(self.wait_ms),
                },
            )


def _count(reply: Any) -> int:
    if isinstance(reply, Exception):
        # The node refused the WAIT: during a failover it may have just turned replica
        # ("WAIT cannot be used with replica instances"). Nothing is confirmed; the
        # client's retry reaches the new master.
        return 0
    if isinstance(reply, dict):  # a cluster client may answer per node
        return min(int(v) for v in reply.values())
    return int(reply)

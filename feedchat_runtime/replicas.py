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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from feedchat_runtime.config import ServiceConfig
from feedchat_runtime.errors import Unavailable
from feedchat_runtime.redis_client import RedisClient, node_name

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

    def add_waits(self, pipe: Any, client: RedisClient, keys: Iterable[str]) -> int:
        """Append a WAIT for every node holding one of ``keys`` (written earlier in
        ``pipe``); the number appended (0 when off), whose replies end the pipeline's."""
        return len(self.queue_waits(pipe, client, keys))

    def queue_waits(self, pipe: Any, client: RedisClient, keys: Iterable[str]) -> list[str]:
        """Like :meth:`add_waits`; the names of the nodes waited for, in the order of the
        WAIT replies (see :meth:`confirmed`)."""
        if self.replicas <= 0:
            return []
        first: dict[str, str] = {}
        for key in keys:
            first.setdefault(node_name(client, key), key)
        for key in first.values():
            queue_wait(client, pipe, key, self.replicas, self.wait_ms)
        return list(first)

    def confirmed(self, nodes: Sequence[str], replies: Sequence[Any]) -> set[str]:
        """The ``nodes`` (of :meth:`queue_waits`) whose WAIT reply counts enough replicas."""
        return {
            node
            for node, reply in zip(nodes, replies, strict=True)
            if _count(reply) >= self.replicas
        }

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


def queue_wait(client: RedisClient, pipe: Any, key: str, replicas: int, timeout_ms: int) -> None:
    """Queue ``WAIT replicas timeout_ms`` on the connection of ``key``'s node; its reply is
    the number of replicas that confirmed every write before it on that connection."""
    if isinstance(client, RedisCluster):
        pipe.execute_command(
            "WAIT", replicas, timeout_ms, target_nodes=client.get_node_from_key(key)
        )
    else:
        pipe.execute_command("WAIT", replicas, timeout_ms)


def _count(reply: Any) -> int:
    if isinstance(reply, Exception):
        # The node refused the WAIT: during a failover it may have just turned replica
        # ("WAIT cannot be used with replica instances"). Nothing is confirmed; the
        # client's retry reaches the new master.
        return 0
    if isinstance(reply, dict):  # a cluster client may answer per node
        return min(int(v) for v in reply.values())
    return int(reply)

"""Pipelines of Lua scripts and replica waits whose every command keeps its own reply.

:class:`Scripts` is :class:`feedchat_runtime.lua.LuaScripts` (scripts by SHA on either
topology) for stores that batch many independent calls in one pipeline: each command
keeps its own reply or error instead of the first error failing the batch. A cluster
pipeline routes a raw ``EVALSHA`` by its keys and runs each node's share on one
connection, in order. Scripts are loaded on demand (a restarted or newly promoted node
answers NOSCRIPT; the scripts are loaded and the commands that got NOSCRIPT are sent
again, with the WAITs of their nodes -- nothing that already ran runs twice).

:func:`queue_wait` queues ``WAIT <replicas> <timeout>`` after a node's commands on the
same connection, so it confirms that node's writes up to there (on a cluster: the node of
the given key's slot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient

Queue = Callable[[Any], None]
"""Queues commands (:meth:`Scripts.queue`, :func:`queue_wait`) on a pipeline."""


class _Recorder:
    """Stands in for a pipeline while commands are queued, so they can be sent again."""

    def __init__(self) -> None:
        self.commands: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> None:
        self.commands.append((args, kwargs))


class Scripts(LuaScripts):
    """Named Lua scripts of one store, with per-command pipelines (see the module)."""

    def queue(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue one script call on ``pipe``; its reply comes back in the pipeline's."""
        pipe.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)

    async def pipeline(self, queue: Queue) -> list[Any]:
        """Run what ``queue`` queues (script calls, WAITs) as one pipeline (not a
        transaction); one reply per command, an exception instance where that command
        failed. Script calls a node answered NOSCRIPT (it had lost the scripts) are sent
        again once the scripts are loaded, with every WAIT after them."""
        recorder = _Recorder()
        queue(recorder)
        commands = recorder.commands
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        for attempt in (0, 1):
            async with self.client.pipeline(transaction=False) as pipe:
                for i in todo:
                    args, kwargs = commands[i]
                    pipe.execute_command(*args, **kwargs)
                for i, reply in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
            lost = {i for i in todo if isinstance(replies[i], NoScriptError)}
            if attempt == 1 or not lost:
                break
            await self.load()
            # A WAIT confirms only writes made on its own connection: it is sent again for
            # the nodes whose scripts are, after them; the others keep their first answer.
            again = {node_name(self.client, str(commands[i][0][3])) for i in lost}
            todo = [
                i
                for i, (args, kwargs) in enumerate(commands)
                if i in lost or (args[0] == "WAIT" and _wait_node(kwargs) in again)
            ]
        return replies


def _wait_node(kwargs: Mapping[str, Any]) -> str:
    """The node a queued WAIT goes to ("" on one Redis)."""
    target = kwargs.get("target_nodes")
    return str(target.name) if target is not None else ""


def node_name(client: RedisClient, key: str) -> str:
    """The node that holds ``key`` ("" on one Redis). Cluster clients must know the slot
    map (:meth:`feedchat_runtime.replicas.ReplicaAcks.ready`)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)
        return node.name if node is not None else ""
    return ""


def queue_wait(client: RedisClient, pipe: Any, key: str, replicas: int, timeout_ms: int) -> None:
    """Queue ``WAIT replicas timeout_ms`` on the connection of ``key``'s node; its reply is
    the number of replicas that confirmed every write before it on that connection."""
    if isinstance(client, RedisCluster):
        pipe.execute_command(
            "WAIT", replicas, timeout_ms, target_nodes=client.get_node_from_key(key)
        )
    else:
        pipe.execute_command("WAIT", replicas, timeout_ms)

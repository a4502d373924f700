"""Lua scripts run one way on either Redis topology: by SHA, loaded again when missing.

Every service keeps its script sources in its ``scripts.py`` (every key through KEYS,
each script commented inside its source with its KEYS, ARGV and reply) with a
``SOURCES`` mapping of them by name, and its store builds one :class:`LuaScripts` over
that mapping. ``SCRIPT LOAD`` goes to every master of a cluster; a node that lost them (a
restart, a promoted replica) answers NOSCRIPT, upon which they are loaded again and what
got NOSCRIPT is sent again:

- :meth:`LuaScripts.call`: one script call, repeated once.
- :meth:`LuaScripts.execute`: a pipeline of script calls and other commands, all or
  error; the whole pipeline is repeated once (its commands must be idempotent). WAITs at
  its end may be ``kept``: their replies come back even when they are errors.
- :meth:`LuaScripts.pipeline`: many independent script calls (and WAITs, see
  :func:`feedchat_runtime.replicas.queue_wait`), each keeping its own reply or error;
  only the calls a node answered NOSCRIPT are sent again, with the WAITs of their nodes
  (nothing that already ran runs twice).

A script call goes on a pipeline as a raw ``EVALSHA``: redis-py's cluster pipeline refuses
its ``evalsha()`` helper but routes the raw command by its keys like any keyed command,
and runs each node's share on one connection, in order.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from feedchat_runtime.redis_client import RedisClient, node_name

Queue = Callable[[Any], None]
"""Queues commands (:meth:`LuaScripts.queue`, WAITs) on a pipeline."""


class _Recorder:
    """Stands in for a pipeline while commands are queued, so they can be sent again."""

    def __init__(self) -> None:
        self.commands: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> None:
        self.commands.append((args, kwargs))


class LuaScripts:
    """The named Lua scripts of one store (see the module)."""

    def __init__(self, client: RedisClient, sources: Mapping[str, str]) -> None:
        self.client = client
        self._sources = dict(sources)
        self._sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in sources.items()}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """SCRIPT LOAD every script (on every master of a cluster)."""
        async with self._lock:
            for source in self._sources.values():
                await self.client.script_load(source)

    def queue(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call of script ``name`` to ``pipe`` (run it with :meth:`execute` or
        :meth:`pipeline`)."""
        pipe.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run script ``name`` once and answer its reply."""
        try:
            return await self.client.evalsha(self._sha[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.load()
            return await self.client.evalsha(self._sha[name], len(keys), *keys, *args)

    async def execute(self, build: Queue, kept: Callable[[], int] = lambda: 0) -> list[Any]:
        """Run the pipeline ``build`` fills (not a transaction); again, once, after loading
        the scripts if a node lacked one. The first error is raised, except among the last
        ``kept()`` replies (e.g. WAITs, whose error means "not confirmed"), returned as is."""
        for attempt in (0, 1):
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                await self.load()
                continue
            for reply in replies[: len(replies) - kept()]:
                if isinstance(reply, Exception):
                    raise reply
            return replies
        raise AssertionError("unreachable")

    async def pipeline(self, queue: Queue) -> list[Any]:
        """Run what ``queue`` queues (script calls, WAITs; only ``execute_command``) as one
        pipeline (not a transaction); one reply per command, an exception instance where
        that command failed. Script calls a node answered NOSCRIPT (it had lost the
        scripts) are sent again once the scripts are loaded, with every WAIT of their
        nodes after them."""
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

"""Lua scripts run one way on either Redis topology: by SHA, loaded again when missing.

A service keeps its script sources in its ``scripts.py`` (every key through KEYS) and
builds one :class:`LuaScripts` over them. ``SCRIPT LOAD`` goes to every master of a
cluster; a node that lost them (a restart, a promoted replica) answers NOSCRIPT, upon
which they are loaded again and the call (or the whole pipeline, whose commands must then
be idempotent) is repeated once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from feedchat_runtime.redis_client import RedisClient


class LuaScripts:
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
        """Add a call of script ``name`` to ``pipe`` (run it with :meth:`execute`)."""
        # As a raw command: redis-py's cluster pipeline refuses its evalsha() helper, but
        # routes EVALSHA by its keys like any keyed command.
        pipe.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self.client.evalsha(self._sha[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.load()
            return await self.client.evalsha(self._sha[name], len(keys), *keys, *args)

    async def execute(
        self, build: Callable[[Any], None], kept: Callable[[], int] = lambda: 0
    ) -> list[Any]:
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

"""Health that tells the truth: NOT_SERVING while any dependency is unreachable.

Every server's :class:`~feedchat_runtime.server.ServiceHost` owns one
:class:`DependencyHealth`. It holds a list of named probes (``etcd`` always; each service
adds what it needs, e.g. ``host.dependencies.add("redis", redis.ping)``), runs all of them
every ``--health-interval`` seconds, and reports the result to grpc.health.v1: SERVING
only while every probe passes, NOT_SERVING while any fails or takes longer than
``--health-timeout``, and SERVING again by itself once they all pass. A new dependency
(PostgreSQL, ...) is one more ``add`` line.

A probe is an async callable; it fails by raising or by returning ``False``. Each check
also sets the ``feedchat_dependency_up{dependency=<name>}`` gauge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from feedchat_runtime.metrics import set_dependency_up

logger = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[object]]
"""Checks one dependency: raises, or returns ``False``, when it is unreachable."""

Report = Callable[[bool], Awaitable[None]]


class DependencyHealth:
    """Named probes run every ``interval`` seconds; changes go to ``report(serving)``."""

    def __init__(self, report: Report, interval: float, timeout: float) -> None:
        self._probes: dict[str, Probe] = {}
        self._report = report
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.serving: bool | None = None
        """The last reported state (None before the first check)."""
        self.failing: list[str] = []
        """Names of the probes that failed in the last check."""

    def add(self, name: str, probe: Probe) -> None:
        """Also require ``probe`` to pass for SERVING."""
        if name in self._probes:
            raise ValueError(f"a probe named {name!r} exists already")
        self._probes[name] = probe

    @property
    def names(self) -> list[str]:
        return list(self._probes)

    async def _passes(self, probe: Probe) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return await probe() is not False
        except Exception:  # any failure (refused, timed out, ...) means unreachable
            return False

    async def check_once(self) -> bool:
        """Run every probe concurrently; report when the outcome changed; return it."""
        names = list(self._probes)
        results = await asyncio.gather(*(self._passes(self._probes[n]) for n in names))
        for name, ok in zip(names, results, strict=True):
            set_dependency_up(name, ok)
        self.failing = [name for name, ok in zip(names, results, strict=True) if not ok]
        serving = not self.failing
        if serving != self.serving:
            if serving:
                if self.serving is not None:
                    logger.info("dependencies reachable again: SERVING")
            else:
                logger.warning("cannot reach %s: NOT_SERVING", ", ".join(self.failing))
            self.serving = serving
            await self._report(serving)
        return serving

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check_once()
            except Exception:
                logger.exception("reporting health failed")

    async def start(self) -> None:
        """Check and report once now, then keep checking in the background."""
        if self._task is not None:
            return
        await self.check_once()
        self._task = asyncio.create_task(self._run(), name="dependency-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

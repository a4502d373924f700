"""Health that tells the truth: NOT_SERVING while Redis or etcd is unreachable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]


class HealthMonitor:
    """Runs ``checks`` every ``interval`` seconds and reports changes to ``report``."""

    def __init__(
        self, checks: dict[str, Check], report: Callable[[bool], Awaitable[None]],
        interval: float,
    ) -> None:
        self._checks = checks
        self._report = report
        self._interval = interval
        self.healthy = True
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        failing = []
        for name, check in self._checks.items():
            try:
                async with asyncio.timeout(self._interval * 2):
                    ok = await check()
            except Exception:
                ok = False
            if not ok:
                failing.append(name)
        healthy = not failing
        if healthy != self.healthy:
            self.healthy = healthy
            if healthy:
                logger.info("dependencies are back: SERVING")
            else:
                logger.warning("lost %s: NOT_SERVING", ", ".join(failing))
            await self._report(healthy)
        return healthy

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("health check failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chat-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

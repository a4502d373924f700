"""Presence for long-poll clients: a poll is its device's heartbeat.

A Connect client keeps a presence stream of its own; a client that only polls cannot, so
the chat server that holds its polls beats for it (presence_svc ``RecordDeviceBeats``,
service credential): when a poll arrives from a device not beaten within the heartbeat
interval, and every interval while a poll of the device is held (a poll may be held
longer than the offline timeout). Beats go out together, at most every ``FLUSH`` seconds.
When the polls stop, the beats stop, and presence_svc marks the device offline once its
offline timeout passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection

logger = logging.getLogger(__name__)

FLUSH = 0.1
"""Seconds between a first poll and its beat being sent (beats that come together share
one call)."""
DEFAULT_INTERVAL = 10.0
"""Seconds between beats of a held device until presence_svc says otherwise."""

SendBeats = Callable[[Collection[tuple[int, str]]], Awaitable[float]]
"""Sends beats of (user id, device id); resolves to the heartbeat interval in seconds."""


class PollPresence:
    """Which devices are polling on this server, and their beats."""

    def __init__(self, send: SendBeats, interval: float = DEFAULT_INTERVAL) -> None:
        self._send = send
        self.interval = interval
        self._held: dict[tuple[int, str], int] = {}
        self._beaten: dict[tuple[int, str], float] = {}
        self._due: set[tuple[int, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="poll-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def hold(self, user_id: int, device_id: str) -> None:
        """A poll of the device arrived (and is held until :meth:`release`)."""
        key = (user_id, device_id)
        self._held[key] = self._held.get(key, 0) + 1
        if time.monotonic() - self._beaten.get(key, -self.interval) >= self.interval:
            self._due.add(key)
            self._wake.set()

    def release(self, user_id: int, device_id: str) -> None:
        key = (user_id, device_id)
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)

    def polling(self) -> int:
        """Devices with a poll held here now."""
        return len(self._held)

    def _collect(self, now: float) -> list[tuple[int, str]]:
        """Devices to beat now: the new ones, and the held ones whose interval passed."""
        stale = now - self.interval
        due = self._due | {k for k in self._held if self._beaten.get(k, -self.interval) <= stale}
        self._due = set()
        for key in [k for k, at in self._beaten.items() if at < stale and k not in self._held]:
            del self._beaten[key]  # stopped polling: forget it
        return sorted(due)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(FLUSH)
            now = time.monotonic()
            beats = self._collect(now)
            if not beats:
                continue
            for key in beats:
                self._beaten[key] = now
            try:
                interval = await self._send(beats)
                if interval > 0:
                    self.interval = interval
            except Exception as exc:  # presence down: the next round beats them again
                logger.debug("poll beats failed: %s", exc)
                for key in beats:
                    self._beaten.pop(key, None)

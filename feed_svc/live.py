"""One Redis pub/sub connection per process, shared by every open StreamFeed.

Channels are reference counted: the first stream that wants ``feed:live:<user>`` or
``feed:celebrity:<author>`` subscribes it, the last one to leave unsubscribes it. Messages
are handed to the streams' callbacks synchronously (they only queue), so one slow stream
never holds up another.

The hub also keeps :attr:`LiveHub.landed`, the newest landed-log position announced on the
control channel. One connection delivers messages in publish order, so once the hub has
it, every live message of every post logged up to it has been handed out. When the
connection fails (messages may be lost) control listeners get ``reset:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from feed_svc.store import CONTROL_CHANNEL

logger = logging.getLogger(__name__)

Listener = Callable[[str, str], None]
"""Called with (channel, message)."""


class LiveHub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._pubsub = redis.pubsub()
        self._listeners: dict[str, set[Listener]] = {}
        self._control: set[Listener] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.landed: str | None = None
        """Newest landed-log position heard (None: none since the hub started)."""

    async def start(self) -> None:
        await self._pubsub.subscribe(CONTROL_CHANNEL)
        self._task = asyncio.create_task(self._listen(), name="feed-live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    def on_control(self, listener: Listener, add: bool = True) -> None:
        """Process-wide notes (promotions) go to every registered listener."""
        if add:
            self._control.add(listener)
        else:
            self._control.discard(listener)

    async def subscribe(self, channels: Iterable[str], listener: Listener) -> None:
        async with self._lock:
            new = []
            for channel in channels:
                holders = self._listeners.setdefault(channel, set())
                if not holders:
                    new.append(channel)
                holders.add(listener)
            if new:
                await self._pubsub.subscribe(*new)

    async def unsubscribe(self, channels: Iterable[str], listener: Listener) -> None:
        async with self._lock:
            gone = []
            for channel in channels:
                holders = self._listeners.get(channel)
                if holders is None:
                    continue
                holders.discard(listener)
                if not holders:
                    del self._listeners[channel]
                    gone.append(channel)
            if gone:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(*gone)

    def _dispatch(self, channel: str, data: str) -> None:
        if channel == CONTROL_CHANNEL and data.startswith("landed:"):
            self.landed = data.removeprefix("landed:")
            return
        targets = self._control if channel == CONTROL_CHANNEL else self._listeners.get(channel, ())
        for listener in list(targets):
            try:
                listener(channel, data)
            except Exception:
                logger.exception("live listener failed")

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: redis-py resubscribes on reconnect
                logger.warning("feed pub/sub read failed: %s", exc)
                self._dispatch(CONTROL_CHANNEL, "reset:")  # live messages may be lost
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel, data = message["channel"], message["data"]
            self._dispatch(
                channel.decode() if isinstance(channel, bytes) else str(channel),
                data.decode() if isinstance(data, bytes) else str(data),
            )

"""One Redis pub/sub connection per process, shared by every open StreamFeed.

Channels are reference counted: the first stream that wants ``feed:live:<user>`` or
``feed:celebrity:<author>`` subscribes it, the last one to leave unsubscribes it. Messages
are handed to the streams' callbacks synchronously (they only queue), so one slow stream
never holds up another.

The hub also keeps :attr:`LiveHub.landed`, the newest landed-log position announced on the
control channel. One connection delivers messages in publish order, so once the hub has
it, every live message of every post logged up to it has been handed out. When the
connection fails (messages may be lost) control listeners get ``reset:`` and the hub opens
a new connection and subscribes again to every channel.

On a Redis Cluster (6.2) a PUBLISH on any node reaches the subscribers of every node, so
the hub's one connection may sit on any node; after a failure it moves to the next one
(:func:`feedchat_runtime.redis_client.open_pubsub`), as the old one may be a dead master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from redis.asyncio.client import PubSub

from feed_svc.keys import CONTROL_CHANNEL, author_channel, live_channel
from feedchat_runtime.redis_client import RedisClient, open_pubsub

logger = logging.getLogger(__name__)

Listener = Callable[[str, str], None]
"""Called with (channel, message)."""


def stream_channels(user: int, celebrities: Iterable[int]) -> set[str]:
    """The channels a user's stream listens to: their own, and each followed celebrity's."""
    return {live_channel(user), *(author_channel(a) for a in celebrities)}


class LiveHub:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._attempt = 0
        self._listeners: dict[str, set[Listener]] = {}
        self._control: set[Listener] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.landed: str | None = None
        """Newest landed-log position heard (None: none since the hub started)."""

    async def start(self) -> None:
        self._pubsub = await open_pubsub(self._redis)
        await self._pubsub.subscribe(CONTROL_CHANNEL)
        self._task = asyncio.create_task(self._listen(), name="feed-live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
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
                assert self._pubsub is not None, "start() first"
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
            if gone and self._pubsub is not None:
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

    async def _reopen(self) -> None:
        """A new connection (the next node of a cluster), subscribed to every channel."""
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._attempt += 1
            self._pubsub = await open_pubsub(self._redis, self._attempt)
            await self._pubsub.subscribe(CONTROL_CHANNEL, *self._listeners)

    async def _listen(self) -> None:
        broken = False
        while True:
            try:
                if broken:
                    await self._reopen()
                    broken = False
                    # Streams that subscribed while the old connection was down may have
                    # missed messages too: they resume as well.
                    self._dispatch(CONTROL_CHANNEL, "reset:")
                assert self._pubsub is not None
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: live messages may be lost
                logger.warning("feed pub/sub read failed: %s", exc)
                if not broken:
                    self._dispatch(CONTROL_CHANNEL, "reset:")
                else:
                    await asyncio.sleep(0.5)  # the next node may be down too
                broken = True
                continue
            if message is None or message.get("type") != "message":
                continue
            channel, data = message["channel"], message["data"]
            self._dispatch(
                channel.decode() if isinstance(channel, bytes) else str(channel),
                data.decode() if isinstance(data, bytes) else str(data),
            )

"""Live notification events for gateway streams: one Redis pub/sub reader per process.

Whichever instance applies a job publishes the event on ``notify:events``; every
instance's :class:`EventHub` hands it to its local subscribers (StreamNotifications
calls). Best effort by design: events published while the reader is reconnecting, or
before a subscriber registered, are not replayed. Each subscriber has a bounded buffer;
one that overflows is marked and its stream is ended, so a slow gateway never grows
memory or slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Collection

from redis.asyncio.client import PubSub

from feedchat_runtime.redis_client import RedisClient, open_pubsub
from notify_svc.models import Event, EventKind, Notification
from notify_svc.store import EVENTS_CHANNEL

logger = logging.getLogger(__name__)


class Overflowed(Exception):
    """The subscriber fell more than its buffer behind."""


class Subscription:
    """One subscriber's filtered, bounded queue of events."""

    def __init__(self, user_ids: Collection[int], buffer: int) -> None:
        self.user_ids = frozenset(user_ids)
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=buffer)
        self.overflowed = False
        self._overflow = asyncio.Event()

    def offer(self, event: Event) -> None:
        if self.user_ids and event.user_id not in self.user_ids:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self._overflow.set()

    async def next(self, stop: asyncio.Event) -> Event | None:
        """The next event; None once ``stop`` is set; Overflowed when fallen behind."""
        if self.overflowed:
            raise Overflowed()
        if not self._queue.empty():
            return self._queue.get_nowait()
        getter = asyncio.create_task(self._queue.get())
        stopper = asyncio.create_task(stop.wait())
        overflow = asyncio.create_task(self._overflow.wait())
        try:
            await asyncio.wait({getter, stopper, overflow}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopper, overflow):
                task.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        if self.overflowed:
            raise Overflowed()
        return None


def parse_event(raw: bytes) -> Event:
    data = json.loads(raw)
    return Event(
        EventKind(data["event"]), int(data["user_id"]), Notification.from_json(data["notification"])
    )


class EventHub:
    """Fans ``notify:events`` out to this process's subscribers."""

    def __init__(self, redis: RedisClient, buffer: int) -> None:
        self._redis = redis
        self._buffer = buffer
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notify-events")
        await self._ready.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, user_ids: Collection[int]) -> Subscription:
        sub = Subscription(user_ids, self._buffer)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def _run(self) -> None:
        backoff = 0.2
        attempt = 0
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = await open_pubsub(self._redis, attempt)
                await pubsub.subscribe(EVENTS_CHANNEL)
                backoff = 0.2
                async for message in pubsub.listen():
                    if message.get("type") == "subscribe":
                        self._ready.set()  # Redis confirmed: no later event is missed
                    if message.get("type") != "message":
                        continue
                    try:
                        event = parse_event(message["data"])
                    except (ValueError, KeyError, TypeError):
                        logger.warning("ignoring malformed notification event")
                        continue
                    for sub in list(self._subs):
                        sub.offer(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("notification event reader broke (%s); reconnecting", exc)
                self._ready.set()  # never hold start-up hostage to Redis
                attempt += 1  # on a cluster: another node
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

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
from collections.abc import Collection

from feedchat_runtime.pubsub import PubSubHub
from feedchat_runtime.redis_client import RedisClient
from notify_svc.models import Event, EventKind, Notification
from notify_svc.store import EVENTS_CHANNEL


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


def _decode(_channel: str, data: bytes) -> Event:
    return parse_event(data)


class EventHub:
    """Fans ``notify:events`` out to this process's subscribers (the channel is the home
    channel of the process's :class:`~feedchat_runtime.pubsub.PubSubHub`)."""

    def __init__(self, redis: RedisClient, buffer: int) -> None:
        self._hub = PubSubHub(redis, "notify-events", _decode)
        self._buffer = buffer
        self._subs: set[Subscription] = set()

    async def start(self) -> None:
        """Returns once Redis confirmed the subscription (no later event is missed), or at
        once when Redis is down: start-up is never held hostage to it."""
        await self._hub.start(EVENTS_CHANNEL, self._offer)

    async def close(self) -> None:
        await self._hub.close()

    def subscribe(self, user_ids: Collection[int]) -> Subscription:
        sub = Subscription(user_ids, self._buffer)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def _offer(self, _channel: str, event: Event) -> None:
        for sub in list(self._subs):
            sub.offer(event)

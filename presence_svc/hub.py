"""The pub/sub fan-in: one Redis subscription connection per instance, shared by its streams.

Streams ask the hub for the users they watch. The hub reference-counts users: the first
listener of a user subscribes the instance to that user's event channel, the last one
leaving unsubscribes, so an instance only hears about users its own connected users watch.
Each incoming transition is handed to that user's listeners.

:meth:`SubscriptionHub.add` returns only once Redis has confirmed the subscription, so a
caller that reads the current state afterwards cannot miss a transition made in between
(it may see one twice; events carry versions for that).

Pub/sub drops what is published while its connection is down. When the connection
breaks, the hub opens a new one (on a Redis Cluster: on another node, as the old one may
be a dead master) and subscribes again to every watched user; when redis-py reconnects by
itself it subscribes again too. Either way the hub notices those unasked-for
confirmations and re-reads the stored state of the users concerned, handing it to their
listeners like an event, so a transition missed during the outage still reaches the
streams (listeners drop what their version shows they already have).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from feedchat_runtime.errors import Unavailable
from feedchat_runtime.redis_client import RedisClient, open_pubsub
from presence_svc.store import StoredState, channel, parse_event, user_of_channel

logger = logging.getLogger(__name__)

Listener = Callable[[StoredState], None]
"""Called (synchronously, on the hub's reader task) with each transition of a watched user."""

Refetch = Callable[[Sequence[int]], Awaitable[list[StoredState]]]
"""Reads the stored state of users (after a reconnect)."""

SUBSCRIBE_TIMEOUT = 5.0
RESYNC_DELAY = 0.05


class SubscriptionHub:
    """Reference-counted channel subscriptions over one pub/sub connection."""

    def __init__(self, redis: RedisClient, instance: str, refetch: Refetch) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._attempt = 0
        self._refetch = refetch
        self._resync: set[int] = set()
        self._resync_task: asyncio.Task[None] | None = None
        self._control = f"presence:instance:{instance}"
        self._listeners: dict[int, set[Listener]] = {}
        # The confirmation each user's current subscription resolves (done once confirmed).
        self._ready: dict[int, asyncio.Future[None]] = {}
        # Per channel, the SUBSCRIBE (a future) and UNSUBSCRIBE (None) commands sent and not
        # yet answered, in order: Redis answers each channel's commands in the order sent,
        # so a confirmation always belongs to the head of its channel's queue.
        self._inflight: dict[bytes, deque[asyncio.Future[None] | None]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.events_received = 0

    @property
    def subscribed_users(self) -> int:
        """Users this instance currently holds a subscription for."""
        return len(self._listeners)

    async def start(self) -> None:
        # A control channel of its own gives the connection a first subscription, so the
        # reader has something to read before any stream watches anyone.
        self._pubsub = await open_pubsub(self._redis)
        await self._pubsub.subscribe(self._control)
        self._task = asyncio.create_task(self._read(), name="presence-hub")

    async def close(self) -> None:
        # A flag as well as cancel(): redis-py may absorb a cancellation during a read.
        self._closed = True
        if self._resync_task is not None:
            self._resync_task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5.0)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        for future in self._ready.values():
            if not future.done():
                future.cancel()

    async def add(self, user_ids: Iterable[int], listener: Listener) -> None:
        """Deliver the transitions of ``user_ids`` to ``listener`` (confirmed on return)."""
        loop = asyncio.get_running_loop()
        new: list[int] = []
        waits: list[asyncio.Future[None]] = []
        for uid in user_ids:
            listeners = self._listeners.get(uid)
            if listeners is None:
                listeners = self._listeners[uid] = set()
                self._ready[uid] = loop.create_future()
                new.append(uid)
            listeners.add(listener)
            ready = self._ready[uid]
            if not ready.done():
                waits.append(ready)
        if new:
            async with self._lock:
                # Users dropped again while we waited for the lock need no subscription.
                live = [uid for uid in new if self._ready.get(uid) is not None]
                for uid in live:
                    self._queue(channel(uid).encode(), self._ready[uid])
                if live:
                    assert self._pubsub is not None, "start() first"
                    await self._pubsub.subscribe(*(channel(uid) for uid in live))
        if waits:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*map(asyncio.shield, waits)), SUBSCRIBE_TIMEOUT
                )
            except TimeoutError as exc:
                raise Unavailable(
                    "presence subscriptions are not being confirmed", reason="PUBSUB_UNAVAILABLE"
                ) from exc

    async def remove(self, user_ids: Iterable[int], listener: Listener) -> None:
        """Stop delivering ``user_ids`` to ``listener``; unsubscribe users nobody watches."""
        gone: list[int] = []
        for uid in user_ids:
            listeners = self._listeners.get(uid)
            if listeners is None or listener not in listeners:
                continue
            listeners.discard(listener)
            if not listeners:
                del self._listeners[uid]
                ready = self._ready.pop(uid)
                if not ready.done():
                    ready.cancel()
                gone.append(uid)
        if not gone:
            return
        async with self._lock:
            # A user watched again while we waited keeps its (new) subscription.
            still = [uid for uid in gone if uid not in self._listeners]
            for uid in still:
                self._queue(channel(uid).encode(), None)
            if still and self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(*(channel(uid) for uid in still))

    def _queue(self, name: bytes, future: asyncio.Future[None] | None) -> None:
        self._inflight.setdefault(name, deque()).append(future)

    def _confirmed(self, name: bytes) -> None:
        pending = self._inflight.get(name)
        if not pending:
            if name != self._control.encode():
                self._resubscribed(name)  # redis-py resubscribed after a reconnect
            return
        future = pending.popleft()
        if not pending:
            del self._inflight[name]
        if future is not None and not future.done():
            future.set_result(None)

    def _resubscribed(self, name: bytes) -> None:
        try:
            uid = user_of_channel(name)
        except ValueError:
            return
        if uid not in self._listeners:
            return
        self._resync.add(uid)
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.create_task(self._resync_soon(), name="presence-resync")

    async def _resync_soon(self) -> None:
        await asyncio.sleep(RESYNC_DELAY)  # gather the burst of resubscriptions
        users, self._resync = sorted(self._resync), set()
        try:
            states = await self._refetch(users)
        except (RedisError, OSError) as exc:
            logger.warning("re-reading presence after a reconnect failed: %s", exc)
            return
        logger.info("pub/sub reconnected; re-read %s watched users", len(states))
        for state in states:
            if state.status is not None:
                self._deliver(state.user_id, state)

    def _deliver(self, uid: int, state: StoredState) -> None:
        for listener in tuple(self._listeners.get(uid, ())):
            try:
                listener(state)
            except Exception:
                logger.exception("presence listener failed")

    def _dispatch(self, name: bytes, data: bytes) -> None:
        try:
            uid = user_of_channel(name)
            state = parse_event(data)
        except ValueError:
            logger.warning("unreadable presence event on %s", name)
            return
        self.events_received += 1
        self._deliver(uid, state)

    async def _reopen(self) -> None:
        """Replace a broken pub/sub connection and subscribe again to every watched user.

        Only the newest unanswered SUBSCRIBE of a still-watched user stays in flight (the
        new connection's confirmation answers it); the other users' confirmations arrive
        unasked and make the hub re-read them.
        """
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._attempt += 1
            inflight: dict[bytes, deque[asyncio.Future[None] | None]] = {}
            for uid in self._listeners:
                name = channel(uid).encode()
                waiting = [f for f in self._inflight.get(name, ()) if f is not None]
                if waiting:
                    inflight[name] = deque(waiting[-1:])
            self._inflight = inflight
            self._pubsub = await open_pubsub(self._redis, self._attempt)
            await self._pubsub.subscribe(self._control, *(channel(u) for u in self._listeners))

    async def _read(self) -> None:
        broken = False
        while not self._closed:
            try:
                if broken:
                    await self._reopen()
                    broken = False
                assert self._pubsub is not None, "start() first"
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                logger.warning("presence pub/sub connection failed: %s", exc)
                broken = True
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._dispatch(message["channel"], message["data"])
            elif kind in ("subscribe", "unsubscribe"):
                self._confirmed(message["channel"])

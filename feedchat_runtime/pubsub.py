"""One Redis pub/sub connection per process, shared by everything in it that listens.

A :class:`PubSubHub` holds one pub/sub connection and a reader task. Channels are
reference counted: the first listener of a channel subscribes it, the last one leaving
unsubscribes it, so a process only hears what its own streams want. Each message is
decoded once (``decode``) and handed synchronously, on the reader task, to the channel's
listeners; listeners only queue, so one slow consumer never holds up another.

:meth:`PubSubHub.subscribe` returns only once Redis has confirmed the subscription, so a
caller that reads the current state afterwards cannot miss a message published in
between (it may see one twice).

Pub/sub drops what is published while its connection is down. When a read fails the hub
calls :attr:`PubSubHub.on_lost`, opens a new connection (on a Redis Cluster: on another
node, as the old one may be a dead master) and subscribes again to every channel. It
notices the unasked-for confirmations and, shortly after, calls :attr:`PubSubHub.on_gap`
with the channels concerned: whatever was published on them meanwhile may be lost, and
the owner decides what that means (re-read the stored state, end the streams, or nothing).

Only the hub reconnects, on its reader task and under its lock. redis-py would otherwise
reconnect a broken pub/sub connection inside whichever call meets the break first, and a
SUBSCRIBE sent from a stream's task would then read the new connection's handshake while
the reader task reads the same socket (``read() called while another coroutine is already
waiting``, a failed stream, a subscription never confirmed). So the hub's connection has
no redis-py retries, a subscription is only sent on a connection that is up (else the
reopen sends it), and the reader reopens a connection that a failed send took down.

Every hub starts with a *home* channel it never leaves: the connection needs one
subscription before it can be read, and each service has such a channel anyway (a
control channel, or the one channel it listens to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from feedchat_runtime.errors import Unavailable
from feedchat_runtime.redis_client import RedisClient, open_pubsub
from feedchat_runtime.replies import text

logger = logging.getLogger(__name__)

T = TypeVar("T")

Decode = Callable[[str, bytes], T]
"""Turns (channel, raw message) into what listeners get; ValueError, KeyError or TypeError
for an unreadable message (logged and dropped)."""
Listener = Callable[[str, T], None]
"""Called with (channel, decoded message), synchronously on the hub's reader task."""

CONFIRM_TIMEOUT = 5.0
"""Seconds :meth:`PubSubHub.subscribe` waits for Redis to confirm before UNAVAILABLE."""
RETRY_DELAY = 0.5
"""Seconds between attempts to reopen a broken connection."""
GAP_DELAY = 0.05
"""Seconds the hub gathers a burst of resubscriptions into one :attr:`PubSubHub.on_gap`."""
_AGAIN = "again"
"""In a channel's queue of commands sent: the SUBSCRIBE a reopen sent for a channel that
no caller waits on (its confirmation reports a gap)."""
_NO_RECONNECT = Retry(NoBackoff(), 0, supported_errors=())
"""The hub connection's retry policy: a failed call raises, redis-py never reconnects."""


Sent = asyncio.Future[None] | str | None
"""A command sent on a channel: a caller's SUBSCRIBE, a reopen's (_AGAIN), an UNSUBSCRIBE."""


class PubSubHub(Generic[T]):
    """Reference-counted channel subscriptions over one pub/sub connection."""

    def __init__(self, redis: RedisClient, name: str, decode: Decode[T]) -> None:
        self.name = name
        """Names the reader task and the log lines."""
        self.on_lost: Callable[[], None] | None = None
        """Called each time the connection is found broken (a read failed, or a send closed
        it): messages may be lost from now on."""
        self.on_gap: Callable[[list[str]], Awaitable[None] | None] | None = None
        """Called with the channels subscribed again after a reconnect (gathered for
        :data:`GAP_DELAY`): messages published on them while it was down are lost."""
        self.messages_received = 0
        self._redis = redis
        self._decode = decode
        self._pubsub: PubSub | None = None
        self._pool_retry: Retry | None = None  # the connection's own policy, put back on close
        self._attempt = 0
        self._home = ""
        self._listeners: dict[str, set[Listener[T]]] = {}
        # The confirmation each channel's current subscription resolves (done once confirmed).
        self._ready: dict[str, asyncio.Future[None]] = {}
        # Per channel, the SUBSCRIBE (a future, or _AGAIN for a reopen's) and UNSUBSCRIBE
        # (None) commands sent and not yet answered, in order: Redis answers each channel's
        # commands in the order sent, so a confirmation belongs to the head of the queue.
        self._inflight: dict[str, deque[Sent]] = {}
        self._gap: set[str] = set()
        self._gap_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def subscribed_channels(self) -> int:
        """Channels held for listeners (the home channel not counted)."""
        return len(self._listeners) - (self._home in self._listeners)

    async def start(self, home: str, listener: Listener[T]) -> None:
        """Open the connection, subscribed to ``home`` for good, and start reading.

        Redis being down does not fail the start: the reader keeps reopening the
        connection in the background (the service reports the dependency meanwhile).
        """
        self._home = home
        self._listeners[home] = {listener}
        ready = self._ready[home] = asyncio.get_running_loop().create_future()
        self._queue(home, ready)  # answered by this connection's SUBSCRIBE or a reopened one's
        try:
            await self._open()
            assert self._pubsub is not None
            await self._pubsub.subscribe(home)
        except (RedisError, OSError) as exc:
            logger.warning("%s: pub/sub unavailable at start (%s); retrying", self.name, exc)
            self._task = asyncio.create_task(self._read(broken=True), name=self.name)
            return
        self._task = asyncio.create_task(self._read(broken=False), name=self.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), CONFIRM_TIMEOUT)

    async def close(self) -> None:
        # A flag as well as cancel(): redis-py may absorb a cancellation during a read.
        self._closed = True
        if self._gap_task is not None:
            self._gap_task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5.0)
        # Bounded: a read that swallowed its cancellation may still hold the connection.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._close_pubsub(), 5.0)
        for future in self._ready.values():
            if not future.done():
                future.cancel()

    async def subscribe(self, channels: Iterable[str], listener: Listener[T]) -> None:
        """Deliver the messages of ``channels`` to ``listener`` (confirmed on return).

        UNAVAILABLE ``PUBSUB_UNAVAILABLE`` when Redis does not confirm in time.
        """
        loop = asyncio.get_running_loop()
        new: list[str] = []
        waits: list[asyncio.Future[None]] = []
        for name in channels:
            listeners = self._listeners.get(name)
            if listeners is None:
                listeners = self._listeners[name] = set()
                self._ready[name] = loop.create_future()
                new.append(name)
            listeners.add(listener)
            ready = self._ready[name]
            if not ready.done():
                waits.append(ready)
        if new:
            async with self._lock:
                # Channels dropped again while we waited for the lock need no subscription.
                live = [name for name in new if self._ready.get(name) is not None]
                for name in live:
                    self._queue(name, self._ready[name])
                # No connection, or a broken one: the reader's reopen subscribes them.
                if live and self._pubsub is not None and self._up():
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.subscribe(*live)
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*map(asyncio.shield, waits)), CONFIRM_TIMEOUT)
            except TimeoutError as exc:
                raise Unavailable(
                    f"{self.name}: subscriptions are not being confirmed",
                    reason="PUBSUB_UNAVAILABLE",
                ) from exc

    async def unsubscribe(self, channels: Iterable[str], listener: Listener[T]) -> None:
        """Stop delivering ``channels`` to ``listener``; unsubscribe channels nobody wants."""
        gone: list[str] = []
        for name in channels:
            listeners = self._listeners.get(name)
            if name == self._home or listeners is None or listener not in listeners:
                continue
            listeners.discard(listener)
            if not listeners:
                del self._listeners[name]
                ready = self._ready.pop(name)
                if not ready.done():
                    ready.cancel()
                gone.append(name)
        if not gone:
            return
        async with self._lock:
            # A channel wanted again while we waited keeps its (new) subscription.
            still = [name for name in gone if name not in self._listeners]
            for name in still:
                self._queue(name, None)
            if still and self._pubsub is not None and self._up():
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(*still)

    def deliver(self, channel: str, message: T) -> None:
        """Hand ``message`` to the listeners of ``channel`` (also used to replay state)."""
        for listener in tuple(self._listeners.get(channel, ())):
            try:
                listener(channel, message)
            except Exception:
                logger.exception("%s: listener failed", self.name)

    def _queue(self, name: str, future: Sent) -> None:
        self._inflight.setdefault(name, deque()).append(future)

    def _confirmed(self, name: str) -> None:
        pending = self._inflight.get(name)
        if not pending:
            logger.warning("%s: an unasked confirmation on %s", self.name, name)
            self._resubscribed(name)  # whatever it was, the channel may have had a gap
            return
        future = pending.popleft()
        if not pending:
            del self._inflight[name]
        if future == _AGAIN:
            self._resubscribed(name)
        elif isinstance(future, asyncio.Future) and not future.done():
            future.set_result(None)

    def _resubscribed(self, name: str) -> None:
        if name not in self._listeners or self.on_gap is None:
            return
        self._gap.add(name)
        if self._gap_task is None or self._gap_task.done():
            self._gap_task = asyncio.create_task(self._report_gap(), name=f"{self.name}-gap")

    async def _report_gap(self) -> None:
        await asyncio.sleep(GAP_DELAY)  # gather the burst of resubscriptions
        channels, self._gap = sorted(self._gap), set()
        if self.on_gap is None:
            return
        try:
            done = self.on_gap(channels)
            if done is not None:
                await done
        except (RedisError, OSError) as exc:
            logger.warning("%s: catching up after a reconnect failed: %s", self.name, exc)
        except Exception:
            logger.exception("%s: catching up after a reconnect failed", self.name)

    def _lost(self) -> None:
        if self.on_lost is None:
            return
        try:
            self.on_lost()
        except Exception:
            logger.exception("%s: on_lost failed", self.name)

    def _dispatch(self, channel: str, data: bytes) -> None:
        try:
            message = self._decode(channel, data)
        except (ValueError, KeyError, TypeError):
            logger.warning("%s: ignoring an unreadable message on %s", self.name, channel)
            return
        self.messages_received += 1
        self.deliver(channel, message)

    async def _reopen(self) -> None:
        """Replace a broken pub/sub connection and subscribe again to every channel.

        Only the newest unanswered SUBSCRIBE of a still-wanted channel stays in flight (the
        new connection's confirmation answers it); the other channels' confirmations are
        reported to :attr:`on_gap`.
        """
        async with self._lock:
            await self._close_pubsub()
            self._attempt += 1
            inflight: dict[str, deque[Sent]] = {}
            names = list(self._listeners)  # what this reopen subscribes (callers add later)
            for name in names:
                sent = self._inflight.get(name, ())
                waiting: list[Sent] = [f for f in sent if isinstance(f, asyncio.Future)]
                inflight[name] = deque(waiting[-1:] or [_AGAIN])
            self._inflight = inflight
            await self._open()
            assert self._pubsub is not None
            await self._pubsub.subscribe(*names)

    async def _open(self) -> None:
        """A new connection, connected, that redis-py will not reconnect by itself."""
        pubsub = await open_pubsub(self._redis, self._attempt)
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        connection = pubsub.connection
        assert connection is not None
        self._pool_retry, connection.retry = connection.retry, _NO_RECONNECT
        self._pubsub = pubsub

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        if pubsub.connection is not None and self._pool_retry is not None:
            pubsub.connection.retry = self._pool_retry  # it goes back to the client's pool
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _up(self) -> bool:
        """Whether the connection is open (a send on a closed one would reconnect it)."""
        connection = self._pubsub.connection if self._pubsub is not None else None
        return connection is not None and connection.is_connected

    async def _read(self, broken: bool) -> None:
        while not self._closed:
            try:
                if broken:
                    await self._reopen()
                    broken = False
                assert self._pubsub is not None, "start() first"
                if not self._up():  # a failed send closed it
                    raise RedisConnectionError("the connection was closed")
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, RedisClusterException, OSError) as exc:
                logger.warning("%s: pub/sub connection failed: %s", self.name, exc)
                self._lost()
                broken = True
                await asyncio.sleep(RETRY_DELAY)
                continue
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._dispatch(text(message["channel"]), message["data"])
            elif kind in ("subscribe", "unsubscribe"):
                self._confirmed(text(message["channel"]))

"""Live device streams on this chat server, and the hub that routes pushes to them.

Each connected device has one :class:`DeviceStream`: a bounded outbound queue plus a
terminal state. Producers (local sends, peer deliveries, receipts) only ever ``offer``
without waiting, so one slow device can never stall the server: when its queue is full
the stream is cut off with RESOURCE_EXHAUSTED (reason SLOW_CONSUMER) and the device
resyncs from its cursor when it comes back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque

from chat_svc.model import InboxEntry, OutFrame, PushEvent, Reconnect, SendAck, SendFailure
from feedchat_runtime.clock import wall_ms
from feedchat_runtime.errors import FeedchatError, ResourceExhausted
from feedchat_runtime.metrics import Histogram

logger = logging.getLogger(__name__)

_ids = itertools.count(1)

DELIVERY_SECONDS = Histogram(
    "feedchat_chat_delivery_seconds",
    "From a message's creation to its push reaching the queues of a recipient's "
    "live devices on their chat server (live pushes only, not syncs).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)

QueueItem = PushEvent | OutFrame


class StreamClosed(Exception):
    """The stream reached its terminal state (see :attr:`DeviceStream.terminal`)."""


class DeviceStream:
    """One connected device: a bounded queue of things to send, and how it ends."""

    def __init__(self, user_id: int, device_id: str, capacity: int) -> None:
        self.stream_id = next(_ids)
        self.user_id = user_id
        self.device_id = device_id
        self.capacity = capacity
        self.terminal: Reconnect | FeedchatError | None = None
        self._items: deque[QueueItem] = deque()
        self._final: list[OutFrame] = []
        self._wake = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.terminal is not None

    def offer(self, item: QueueItem) -> bool:
        """Queue ``item`` without waiting; False when closed or just cut off for overflow.

        A stream being moved (closed with a Reconnect) still takes send replies: they go
        out before the ``reconnect`` frame (see :meth:`final_frames`).
        """
        if self.terminal is not None:
            if isinstance(self.terminal, Reconnect) and isinstance(item, SendAck | SendFailure):
                self._final.append(item)
                return True
            return False
        if len(self._items) >= self.capacity:
            logger.warning(
                "slow consumer cut off: user %s device %s (%s frames queued)",
                self.user_id,
                self.device_id,
                len(self._items),
            )
            self.close(
                ResourceExhausted(
                    f"the client fell more than {self.capacity} frames behind; reconnect and "
                    "resync from the last inbox cursor",
                    reason="SLOW_CONSUMER",
                )
            )
            return False
        self._items.append(item)
        self._wake.set()
        return True

    def close(self, terminal: Reconnect | FeedchatError) -> None:
        """End the stream: a Reconnect frame is sent, an error becomes the status.

        On a Reconnect the queued send replies (acks among them) are kept and sent before
        it; queued inbox entries, receipts and typing are dropped (the device resyncs its
        inbox from its cursor; receipts and typing are best effort).
        """
        if self.terminal is None:
            self.terminal = terminal
            if isinstance(terminal, Reconnect):
                self._final = [i for i in self._items if isinstance(i, SendAck | SendFailure)]
            self._items.clear()
            self._wake.set()

    def final_frames(self) -> list[OutFrame]:
        """The send replies a moved stream still owes its device (each returned once)."""
        taken, self._final = self._final, []
        return taken

    async def take(self) -> QueueItem:
        """The next queued item (waiting for one); StreamClosed once closed."""
        return (await self.take_many(1))[0]

    async def take_many(self, limit: int) -> list[QueueItem]:
        """Up to ``limit`` queued items, oldest first: whatever is queued once there is at
        least one (waiting for the first, never for more); StreamClosed once closed.

        Items leave the queue only when the stream is ready to write its next frame, so
        the queue length is the true backlog the bound applies to.
        """
        while not self._items:
            if self.terminal is not None:
                raise StreamClosed
            self._wake.clear()
            await self._wake.wait()
        if self.terminal is not None:
            raise StreamClosed
        items = self._items
        if len(items) <= limit:
            taken = list(items)
            items.clear()
            return taken
        return [items.popleft() for _ in range(limit)]


LINGER_MAX = 100_000
"""Most users remembered as just polled (expired ones are dropped past it)."""


class ConnectionHub:
    """All device streams on this server, by user (held polls are streams too), and the
    users whose poll just ended (see :meth:`linger`)."""

    def __init__(self) -> None:
        self._by_user: dict[int, dict[int, DeviceStream]] = {}
        self._lingering: dict[int, float] = {}

    def register(self, stream: DeviceStream) -> None:
        self._by_user.setdefault(stream.user_id, {})[stream.stream_id] = stream

    def unregister(self, stream: DeviceStream) -> None:
        streams = self._by_user.get(stream.user_id)
        if streams is not None:
            streams.pop(stream.stream_id, None)
            if not streams:
                del self._by_user[stream.user_id]

    def devices(self, user_id: int) -> list[DeviceStream]:
        return list(self._by_user.get(user_id, {}).values())

    def users(self) -> list[int]:
        return list(self._by_user)

    def linger(self, user_id: int, seconds: float) -> None:
        """A poll of the user just ended: for ``seconds`` the user still counts as reached
        (the next poll, a moment away, reads the entry from the inbox), so a polling
        user's messages are not sent to notify_svc as if nobody were connected."""
        now = time.monotonic()
        if len(self._lingering) >= LINGER_MAX:
            self._lingering = {u: t for u, t in self._lingering.items() if t > now}
        self._lingering[user_id] = now + seconds

    def deliver(self, user_id: int, event: PushEvent) -> int:
        """Offer ``event`` to every live device of ``user_id``; how many accepted it.

        A device cut off for overflow still counts as reached: the entry is stored and the
        device resyncs it on reconnect, so nobody needs an offline notification for it.
        So does a user whose poll ended a moment ago (:meth:`linger`).
        """
        streams = self.devices(user_id)
        for stream in streams:
            stream.offer(event)
        if streams and isinstance(event, InboxEntry):
            waited_ms = wall_ms() - event.message.created_ms
            DELIVERY_SECONDS.observe(max(0, waited_ms) / 1000)
        if not streams and self._lingering.get(user_id, 0.0) > time.monotonic():
            return 1
        return len(streams)

    def close_users(self, reconnects: dict[int, Reconnect]) -> int:
        """Close every stream of each user with that user's Reconnect frame; how many."""
        closed = 0
        for uid, reconnect in reconnects.items():
            for stream in self.devices(uid):
                stream.close(reconnect)
                closed += 1
        return closed

"""The feed side of the process's pub/sub hub, shared by every open StreamFeed.

Streams listen to ``feed:live:<user>`` and ``feed:celebrity:<author>`` through the
runtime's :class:`~feedchat_runtime.pubsub.PubSubHub` (reference counted, one connection
per process). Messages are handed to the streams' callbacks synchronously (they only
queue), so one slow stream never holds up another.

The hub's home channel is the control channel. The hub keeps :attr:`LiveHub.landed`, the
newest landed-log position announced there: one connection delivers messages in publish
order, so once the hub has it, every live message of every post logged up to it has been
handed out. Other control notes (promotions) go to every control listener. When the
connection fails (live messages may be lost) control listeners get ``reset:``; they get
it again once the hub is subscribed anew on a new connection, as streams that subscribed
meanwhile may have missed messages too.

On a Redis Cluster (6.2) a PUBLISH on any node reaches the subscribers of every node, so
the hub's one connection may sit on any node; after a failure the runtime hub moves it to
the next one, as the old one may be a dead master.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from feed_svc.keys import CONTROL_CHANNEL, author_channel, live_channel
from feedchat_runtime.pubsub import PubSubHub
from feedchat_runtime.redis_client import RedisClient

logger = logging.getLogger(__name__)

Listener = Callable[[str, str], None]
"""Called with (channel, message)."""


def stream_channels(user: int, celebrities: Iterable[int]) -> set[str]:
    """The channels a user's stream listens to: their own, and each followed celebrity's."""
    return {live_channel(user), *(author_channel(a) for a in celebrities)}


def _decode(_channel: str, data: bytes) -> str:
    return data.decode()


class LiveHub:
    def __init__(self, redis: RedisClient) -> None:
        self._hub = PubSubHub(redis, "feed-live-hub", _decode)
        self._hub.on_lost = self._reset
        self._hub.on_gap = self._gap
        self._control: set[Listener] = set()
        self.landed: str | None = None
        """Newest landed-log position heard (None: none since the hub started)."""

    async def start(self) -> None:
        await self._hub.start(CONTROL_CHANNEL, self._on_control_channel)

    async def stop(self) -> None:
        await self._hub.close()

    def on_control(self, listener: Listener, add: bool = True) -> None:
        """Process-wide notes (promotions) go to every registered listener."""
        if add:
            self._control.add(listener)
        else:
            self._control.discard(listener)

    async def subscribe(self, channels: Iterable[str], listener: Listener) -> None:
        await self._hub.subscribe(channels, listener)

    async def unsubscribe(self, channels: Iterable[str], listener: Listener) -> None:
        await self._hub.unsubscribe(channels, listener)

    def _on_control_channel(self, channel: str, data: str) -> None:
        if data.startswith("landed:"):
            self.landed = data.removeprefix("landed:")
            return
        for listener in list(self._control):
            try:
                listener(channel, data)
            except Exception:
                logger.exception("live control listener failed")

    def _reset(self) -> None:
        self._on_control_channel(CONTROL_CHANNEL, "reset:")  # live messages may be lost

    def _gap(self, _channels: list[str]) -> None:
        self._reset()

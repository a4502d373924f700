"""The presence side of the process's pub/sub hub: watched users and their transitions.

Streams ask the hub for the users they watch; each user is a channel of the runtime's
:class:`~feedchat_runtime.pubsub.PubSubHub` (reference counted, one connection per
instance, so an instance only hears about users its own connected users watch). Each
incoming transition is handed to that user's listeners.

:meth:`SubscriptionHub.add` returns only once Redis has confirmed the subscription, so a
caller that reads the current state afterwards cannot miss a transition made in between
(it may see one twice; events carry versions for that).

Pub/sub drops what is published while its connection is down. After a reconnect the
runtime hub reports the users subscribed again; this hub re-reads their stored state and
hands it to their listeners like an event, so a transition missed during the outage still
reaches the streams (listeners drop what their version shows they already have).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from feedchat_runtime.pubsub import PubSubHub
from feedchat_runtime.redis_client import RedisClient
from presence_svc.store import StoredState, channel, parse_event, user_of_channel

logger = logging.getLogger(__name__)

Listener = Callable[[str, StoredState], None]
"""Called (synchronously, on the hub's reader task) with (channel, transition) of a watched
user."""

Refetch = Callable[[Sequence[int]], Awaitable[list[StoredState]]]
"""Reads the stored state of users (after a reconnect)."""


def _decode(_channel: str, data: bytes) -> StoredState:
    return parse_event(data)


def _ignore(_channel: str, _state: StoredState) -> None:
    """Nothing is published on the instance's home channel; it only holds the connection."""


class SubscriptionHub:
    """Watched users over the instance's one pub/sub connection."""

    def __init__(self, redis: RedisClient, instance: str, refetch: Refetch) -> None:
        self._hub = PubSubHub(redis, "presence-hub", _decode)
        self._hub.on_gap = self._resync
        self._refetch = refetch
        self._home = f"presence:instance:{instance}"

    @property
    def subscribed_users(self) -> int:
        """Users this instance currently holds a subscription for."""
        return self._hub.subscribed_channels

    @property
    def events_received(self) -> int:
        return self._hub.messages_received

    async def start(self) -> None:
        await self._hub.start(self._home, _ignore)

    async def close(self) -> None:
        await self._hub.close()

    async def add(self, user_ids: Iterable[int], listener: Listener) -> None:
        """Deliver the transitions of ``user_ids`` to ``listener`` (confirmed on return)."""
        await self._hub.subscribe([channel(uid) for uid in user_ids], listener)

    async def remove(self, user_ids: Iterable[int], listener: Listener) -> None:
        """Stop delivering ``user_ids`` to ``listener``; unsubscribe users nobody watches."""
        await self._hub.unsubscribe([channel(uid) for uid in user_ids], listener)

    async def _resync(self, channels: list[str]) -> None:
        users = []
        for name in channels:
            try:
                users.append(user_of_channel(name))
            except ValueError:
                continue  # the home channel
        if not users:
            return
        states = await self._refetch(users)
        logger.info("pub/sub reconnected; re-read %s watched users", len(states))
        for state in states:
            if state.status is not None:
                self._hub.deliver(channel(state.user_id), state)

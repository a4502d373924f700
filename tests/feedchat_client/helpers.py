"""Small helpers for client tests: signed-up users, connections that record their states."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from feedchat_client import ChatConnection, FeedchatClient
from feedchat_client.chat_poll import ChatPoller
from tests.feedchat_client.system import System

_names = itertools.count()


async def user(system: System, name: str, **client_kwargs: Any) -> FeedchatClient:
    """A client for a newly signed-up user (unique name per call)."""
    client = system.client(**client_kwargs)
    await client.session.sign_up(f"{name}{next(_names)}", "password-123")
    return client


@dataclass
class StateLog:
    """Collects a connection's ``on_state`` calls."""

    events: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, state: str, detail: str) -> None:
        self.events.append((state, detail))

    def states(self) -> list[str]:
        return [s for s, _ in self.events]


async def texts(conn: ChatConnection | ChatPoller, count: int, timeout: float = 10.0) -> list[str]:  # noqa: ASYNC109
    """The next ``count`` message texts."""
    return [(await conn.next_message(timeout)).text for _ in range(count)]


async def direct_pair(system: System) -> tuple[FeedchatClient, FeedchatClient, int]:
    """Two chat servers started; alice, bob and their direct channel's id."""
    await system.start(chat_servers=2)
    alice, bob = await user(system, "alice"), await user(system, "bob")
    channel = await alice.chat.open_direct(bob.session.user_id)
    return alice, bob, channel.channel_id

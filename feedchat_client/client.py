"""The entry point: :class:`FeedchatClient` ties discovery, the session and the wrappers."""

from __future__ import annotations

from collections.abc import Callable

from feedchat_client.account import AccountClient
from feedchat_client.auth import Session
from feedchat_client.chat import ChatClient, RouterClient
from feedchat_client.discovery import Discovery, EtcdDiscovery, StaticDiscovery
from feedchat_client.feed import FeedClient
from feedchat_client.notify import NotifyClient
from feedchat_client.presence import PresenceClient
from feedchat_client.tokens import TokenStore
from feedchat_client.transport import Transport


class FeedchatClient:
    """One user's client of a feedchat system.

    Example::

        async with FeedchatClient.from_etcd("127.0.0.1:2379") as client:
            await client.session.log_in("alice", "correct horse")
            await client.feed.post("hello")
            async for post in client.feed.iterate(limit=20):
                print(post.author.username, post.text)

    Attributes: ``session`` (sign-up, login, tokens), ``account``, ``feed``, ``presence``,
    ``router``, ``chat`` and ``notify`` (typed wrappers of each service).
    """

    def __init__(
        self,
        discovery: Discovery,
        *,
        tokens: TokenStore | None = None,
        tls_ca: bytes | None = None,
        timeout: float = 10.0,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.transport = Transport(discovery, tls_ca)
        if clock is None:
            self.session = Session(self.transport, tokens, refresh_margin, timeout=timeout)
        else:
            self.session = Session(self.transport, tokens, refresh_margin, clock, timeout)
        self.account = AccountClient(self.transport, self.session, timeout)
        self.feed = FeedClient(self.transport, self.session, timeout)
        self.presence = PresenceClient(self.transport, self.session, timeout)
        self.router = RouterClient(self.transport, self.session, timeout)
        self.chat = ChatClient(self.transport, self.session, timeout, router=self.router)
        self.notify = NotifyClient(self.transport, self.session, timeout)

    @classmethod
    def from_etcd(
        cls, endpoints: str = "127.0.0.1:2379", prefix: str = "/feedchat", **kwargs: object
    ) -> FeedchatClient:
        """A client that finds every service in the etcd registry."""
        return cls(EtcdDiscovery(endpoints, prefix), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_addresses(cls, addresses: dict[str, str], **kwargs: object) -> FeedchatClient:
        """A client with fixed addresses, e.g. ``{"account": "127.0.0.1:50051", ...}``."""
        return cls(StaticDiscovery(addresses), **kwargs)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> FeedchatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

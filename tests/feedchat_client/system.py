"""A whole feedchat system in this process, for client tests: account, feed, router,
presence and N chat servers on the test etcd prefix and Redis, on port 0."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from account_svc.app import build as build_account
from account_svc.config import AccountConfig
from chat_svc.app import ChatApp
from chat_svc.app import build as build_chat
from chat_svc.config import ChatConfig
from feed_svc.app import build as build_feed
from feed_svc.config import FeedConfig
from feedchat.router.v1 import router_pb2, router_pb2_grpc
from feedchat_client import EtcdDiscovery, FeedchatClient, StaticDiscovery
from feedchat_runtime.auth import authority_from_config
from feedchat_runtime.server import ServiceHost
from router.app import build as build_router
from router.config import RouterConfig
from tests.chat_svc.chatkit import slow_ring_watch
from tests.waiting import eventually

DEV_AUTHORITY = authority_from_config("", "", dev=True)
FAST_ACCOUNT = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 64,
    "argon2_parallelism": 1,
    "hash_workers": 1,
}


@dataclass
class System:
    """Started servers; ``stop()`` stops what is still running."""

    make_config: Callable[..., Any]
    etcd: str
    prefix: str
    hosts: dict[str, ServiceHost] = field(default_factory=dict)
    chats: list[ChatApp] = field(default_factory=list)
    _stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    clients: list[FeedchatClient] = field(default_factory=list)

    def address(self, service: str) -> str:
        """A service's address ("chat": the first live chat server's)."""
        if service == "chat":
            return self.live_chats[0].address
        return self.hosts[service].address

    @property
    def live_chats(self) -> list[ChatApp]:
        return [c for c in self.chats if not c.host.draining.is_set()]

    def client(self, etcd: bool = True, **kwargs: Any) -> FeedchatClient:
        """A client finding services through the registry (or by fixed addresses)."""
        if etcd:
            client = FeedchatClient(EtcdDiscovery(self.etcd, self.prefix), **kwargs)
        else:
            client = FeedchatClient(
                StaticDiscovery({s: h.address for s, h in self.hosts.items()}), **kwargs
            )
        self.clients.append(client)
        return client

    async def start(
        self,
        chat_servers: int = 2,
        presence: bool = False,
        notify: bool = False,
        account: dict[str, Any] | None = None,
    ) -> System:
        account_host = await build_account(
            self.make_config(
                AccountConfig, instance="account-0", **{**FAST_ACCOUNT, **(account or {})}
            )
        )
        await account_host.start()
        self.hosts["account"] = account_host
        self._stops.append(account_host.stop)
        feed = await build_feed(
            self.make_config(FeedConfig, instance="feed-0", fanout_workers=1, fanout_block=0.2)
        )
        await feed.host.start()
        self.hosts["feed"] = feed.host
        self._stops.append(feed.host.stop)
        router = await build_router(self.make_config(RouterConfig, instance="router-0"))
        await router.start()
        self.hosts["router"] = router
        self._stops.append(router.stop)
        if presence:
            from presence_svc.app import build as build_presence
            from presence_svc.config import PresenceConfig

            app = await build_presence(self.make_config(PresenceConfig, instance="presence-0"))
            await app.start()
            self.hosts["presence"] = app.host
            self._stops.append(app.stop)
        if notify:
            from notify_svc.app import build as build_notify
            from notify_svc.config import NotifyConfig

            notifier = await build_notify(self.make_config(NotifyConfig, instance="notify-0"))
            await notifier.start()
            self.hosts["notify"] = notifier.host
            self._stops.append(notifier.stop)
        for _ in range(chat_servers):
            await self.add_chat()
        return self

    async def add_chat(self, watch_delay: float = 0.0) -> ChatApp:
        """Start one more chat server and wait until every live one sees the same ring.

        ``watch_delay``: the new server applies every membership change that much later
        than it arrives (a slow ring watch, as on a busy machine: its peers see it join
        before it sees itself).
        """
        app = await build_chat(
            self.make_config(ChatConfig, instance=f"chat-{len(self.chats)}", health_interval=0.5)
        )
        if watch_delay:
            slow_ring_watch(app, watch_delay)
        await app.start()
        self.chats.append(app)
        await self.rings_agree()
        return app

    async def rings_agree(self) -> None:
        names = {a.config.instance for a in self.live_chats}
        for app in self.live_chats:
            await app.ring.wait_for(lambda r: set(r.members) == names, 10)
        channel = grpc.aio.insecure_channel(self.address("router"))
        stub = router_pb2_grpc.RouterServiceStub(channel)
        metadata = (("authorization", f"Bearer {DEV_AUTHORITY.issue_access(1).token}"),)
        try:

            async def router_sees_all() -> bool:
                reply = await stub.ListChatServers(
                    router_pb2.ListChatServersRequest(), metadata=metadata
                )
                return {s.instance for s in reply.chat_servers} == names

            await eventually(router_sees_all, what="the router's ring")
        finally:
            await channel.close()

    async def rings_agree_without(self, crashed: ChatApp) -> None:
        """After a crash: wait until the survivors' and the router's rings drop it."""
        crashed.host.draining.set()  # counts as gone for live_chats
        await self.rings_agree()

    async def restart_feed(self) -> None:
        """Stop feed_svc (it drains its streams) and start a new instance on a new port."""
        await self.hosts["feed"].stop()
        feed = await build_feed(
            self.make_config(FeedConfig, instance="feed-1", fanout_workers=1, fanout_block=0.2)
        )
        await feed.host.start()
        self.hosts["feed"] = feed.host
        self._stops.append(feed.host.stop)

    def owner(self, user_id: int) -> ChatApp:
        member = self.live_chats[0].ring.ring.owner(user_id)
        assert member is not None
        return next(a for a in self.live_chats if a.config.instance == member.instance)

    async def stop_chat(self, app: ChatApp) -> None:
        await app.stop()
        await self.rings_agree()

    async def stop(self) -> None:
        """Close clients, then servers; a step that hangs is reported, not waited on."""
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"client {i}", c.close) for i, c in enumerate(self.clients)
        ]
        steps += [(f"chat {a.config.instance}", a.stop) for a in reversed(self.chats)]
        steps += [(f"server {i}", stop) for i, stop in enumerate(reversed(self._stops))]
        stuck = []
        for name, step in steps:
            try:
                await asyncio.wait_for(step(), 15)
            except TimeoutError:
                stuck.append(name)
            except Exception:  # noqa: BLE001 - already stopped, or a crash test's leftovers
                pass
        assert not stuck, f"teardown hung in {stuck}"

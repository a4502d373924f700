"""Finding and calling other feedchat services: through the registry, never a fixed list.

:class:`ServiceDirectory` watches the registry for each service a process calls, keeps one
channel per address, and carries this process's service credential, refreshed before it
expires, so peer RPCs pass the guard's service-only checks and a user token cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import grpc

from feedchat_runtime.auth import TokenAuthority
from feedchat_runtime.config import ServiceConfig
from feedchat_runtime.errors import Unavailable
from feedchat_runtime.registry import EtcdSession, Member, ServiceWatch
from feedchat_runtime.server import open_channel


class ServiceDirectory:
    """Live members of the services this process calls, and channels to them."""

    def __init__(
        self,
        session: EtcdSession,
        config: ServiceConfig,
        authority: TokenAuthority,
        caller_service: str,
    ) -> None:
        self._session = session
        self._config = config
        self._authority = authority
        self._caller = caller_service
        self._watches: dict[str, ServiceWatch] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._token = ""
        self._token_expires = 0.0
        self._lock = asyncio.Lock()
        self._seen: set[str] = set()
        self._closing: set[asyncio.Task[None]] = set()

    async def watch(self, service: str) -> ServiceWatch:
        """The live member view of ``service`` (started on first use)."""
        async with self._lock:
            watch = self._watches.get(service)
            if watch is None:
                watch = ServiceWatch(self._session, service)
                await watch.start()
                watch.listeners.append(self._forget_departed)
                self._watches[service] = watch
            return watch

    def _forget_departed(self, members: dict[str, Member]) -> None:
        """Close channels to addresses no watched service lists any more.

        Without this a long-lived process keeps a channel (and its reconnect attempts) to
        every peer that ever left. Addresses given to :meth:`channel_to` that no watch has
        ever listed are left alone.
        """
        del members  # the watches' own views are current when listeners run
        live = {m.address for w in self._watches.values() for m in w.members.values()}
        for address in list(self._channels):
            if address in self._seen and address not in live:
                self.forget(address)
        self._seen |= live

    def forget(self, address: str) -> None:
        """Close the channel to ``address`` (a peer that left), letting calls finish briefly."""
        self._seen.discard(address)
        channel = self._channels.pop(address, None)
        if channel is not None:
            self._closing.add(asyncio.create_task(channel.close(grace=1.0)))
            self._closing = {task for task in self._closing if not task.done()}

    async def members(self, service: str) -> dict[str, Member]:
        return dict((await self.watch(service)).members)

    def channel_to(self, address: str) -> grpc.aio.Channel:
        """A (cached) channel to one address."""
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(self._config, address)
            self._channels[address] = channel
        return channel

    async def channel(self, service: str) -> grpc.aio.Channel:
        """A channel to some live instance of ``service`` (round robin); UNAVAILABLE if none."""
        watch = await self.watch(service)
        members = sorted(watch.members.values(), key=lambda m: m.instance)
        self._seen |= {m.address for m in members}
        if not members:
            raise Unavailable(f"no {service} instance is registered", reason="NO_INSTANCE")
        counter = self._round_robin.setdefault(service, itertools.count())
        return self.channel_to(members[next(counter) % len(members)].address)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying this process's service credential."""
        now = time.time()
        if now > self._token_expires - 60:
            issued = self._authority.issue_service(self._caller)
            self._token, self._token_expires = issued.token, issued.expires_at
        return (("authorization", f"Bearer {self._token}"),)

    @property
    def open_addresses(self) -> set[str]:
        """Addresses this directory currently holds a channel to."""
        return set(self._channels)

    async def close(self) -> None:
        await asyncio.gather(*self._closing, return_exceptions=True)
        for watch in self._watches.values():
            await watch.stop()
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._watches.clear()
        self._channels.clear()

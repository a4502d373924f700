"""Finding feedchat services: through the etcd registry, or from given addresses.

A :class:`Discovery` answers "which addresses serve ``account`` right now?". The etcd
flavour keeps one :class:`~feedchat_runtime.registry.ServiceWatch` per service it was asked
about, so it follows instances coming and going; the static flavour is for tests, tunnels
and places without etcd access.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aetcd.exceptions

from feedchat_client.errors import ServiceNotFound
from feedchat_runtime.registry import EtcdSession, ServiceWatch, list_members

SERVICES = ("account", "feed", "presence", "router", "notify", "chat")
"""Registry names of feedchat's services."""


class Discovery(Protocol):
    """Where the instances of a service are."""

    async def addresses(self, service: str) -> list[str]:
        """Live ``host:port`` addresses of ``service``, in a stable order; may be empty."""
        ...

    async def close(self) -> None: ...


class StaticDiscovery:
    """Fixed addresses, e.g. ``StaticDiscovery(account="127.0.0.1:50051", feed=...)``.

    A value may be a comma-separated list of addresses.
    """

    def __init__(self, addresses: Mapping[str, str | list[str]] | None = None,
                 **by_service: str) -> None:
        merged: dict[str, str | list[str]] = {**(addresses or {}), **by_service}
        self._addresses: dict[str, list[str]] = {}
        for service, value in merged.items():
            items = value.split(",") if isinstance(value, str) else value
            self._addresses[service] = [a.strip() for a in items if a.strip()]

    async def addresses(self, service: str) -> list[str]:
        return list(self._addresses.get(service, []))

    async def close(self) -> None:
        return None


class EtcdDiscovery:
    """Live membership from the registry ``feedchat up`` and every server write to.

    ``endpoints`` is ``host:port`` or a comma-separated list of etcd members. No lease is
    taken: a client only reads. The first lookup of a service waits at most ``timeout``
    seconds for etcd; after that, answers come from the watch's memory.
    """

    def __init__(self, endpoints: str = "127.0.0.1:2379", prefix: str = "/feedchat",
                 timeout: float = 5.0, watch: bool = True) -> None:
        self.endpoints = endpoints
        self.prefix = prefix
        self.timeout = timeout
        self._watching = watch
        self._session = EtcdSession(endpoints, prefix)
        self._watches: dict[str, ServiceWatch] = {}
        self._lock = asyncio.Lock()
        self._connected = False

    async def _connect(self) -> None:
        if not self._connected:
            await asyncio.wait_for(self._session.client.connect(), self.timeout)
            self._connected = True

    async def addresses(self, service: str) -> list[str]:
        try:
            async with self._lock:
                await self._connect()
                if not self._watching:
                    members = await asyncio.wait_for(
                        list_members(self._session.client, self.prefix, service), self.timeout)
                    return [m.address for m in members]
                watch = self._watches.get(service)
                if watch is None:
                    watch = ServiceWatch(self._session, service)
                    try:
                        await asyncio.wait_for(watch.start(), self.timeout)
                    except BaseException:
                        await watch.stop()
                        raise
                    self._watches[service] = watch
        except (TimeoutError, OSError, aetcd.exceptions.ClientError) as exc:
            raise ServiceNotFound(
                f"cannot read the registry at {self.endpoints} ({str(exc) or 'timed out'}); "
                "is `feedchat up` running, and is --etcd right?"
            ) from exc
        return [m.address for m in sorted(watch.members.values(), key=lambda m: m.instance)]

    async def close(self) -> None:
        for watch in self._watches.values():
            await watch.stop()
        self._watches.clear()
        if self._connected:
            await self._session.client.close()
            self._connected = False

"""Finding feedchat services: through the etcd registry, or from given addresses.

A :class:`Discovery` answers "which addresses serve ``account`` right now?". The etcd
flavour reads the registry that every server writes (``<prefix>/services/<service>/<instance>``,
JSON with the address) over etcd's HTTP gateway and follows instances coming and going by
re-reading at most once a ``refresh`` period; the static flavour is for tests, tunnels and
places without etcd access. Neither needs an etcd client library.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from typing import Protocol

import httpx

from feedchat_client.errors import ServiceNotFound

SERVICES = ("account", "feed", "presence", "router", "notify", "chat")
"""Registry names of feedchat's services."""


class Discovery(Protocol):
    """Where the instances of a service are."""

    async def addresses(self, service: str, fresh: bool = False) -> list[str]:
        """Live ``host:port`` addresses of ``service``, in a stable order; may be empty.

        ``fresh`` asks for the registry's answer now rather than a remembered one (after a
        call to a remembered address failed as UNAVAILABLE)."""
        ...

    async def close(self) -> None: ...


class StaticDiscovery:
    """Fixed addresses, e.g. ``StaticDiscovery(account="127.0.0.1:50051", feed=...)``.

    A value may be a comma-separated list of addresses.
    """

    def __init__(
        self, addresses: Mapping[str, str | list[str]] | None = None, **by_service: str
    ) -> None:
        merged: dict[str, str | list[str]] = {**(addresses or {}), **by_service}
        self._addresses: dict[str, list[str]] = {}
        for service, value in merged.items():
            items = value.split(",") if isinstance(value, str) else value
            self._addresses[service] = [a.strip() for a in items if a.strip()]

    async def addresses(self, service: str, fresh: bool = False) -> list[str]:
        return list(self._addresses.get(service, []))

    async def close(self) -> None:
        return None


class EtcdDiscovery:
    """Live membership from the registry ``feedchat up`` and every server write to.

    ``endpoints`` is ``host:port`` or a comma-separated list of etcd members, tried in
    turn. The registry is read through etcd's JSON gateway (``POST /v3/kv/range``) with
    httpx, so a client needs no etcd client library. An answer is reused for ``refresh``
    seconds (0: read the registry on every lookup); a lookup waits at most ``timeout``
    seconds for etcd. While etcd is unreachable, the last answer keeps being used, so a
    registry outage does not stop calls to servers that are still up.
    """

    def __init__(
        self,
        endpoints: str = "127.0.0.1:2379",
        prefix: str = "/feedchat",
        timeout: float = 5.0,
        refresh: float = 1.0,
    ) -> None:
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self.refresh = refresh
        self._urls = [f"http://{e.strip()}/v3/kv/range" for e in endpoints.split(",") if e.strip()]
        self._http: httpx.AsyncClient | None = None
        self._known: dict[str, tuple[float, list[str]]] = {}
        self._lock = asyncio.Lock()

    async def addresses(self, service: str, fresh: bool = False) -> list[str]:
        async with self._lock:
            now = time.monotonic()
            known = self._known.get(service)
            if known is not None and not fresh and now - known[0] < self.refresh:
                return list(known[1])
            try:
                found = await self._read(service)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                if known is not None:
                    return list(known[1])
                raise ServiceNotFound(
                    f"cannot read the registry at {self.endpoints} ({exc or 'timed out'}); "
                    "is `feedchat up` running, and is --etcd right?"
                ) from exc
            self._known[service] = (now, found)
            return list(found)

    async def _read(self, service: str) -> list[str]:
        """Registered addresses of ``service``, ordered by instance name."""
        root = f"{self.prefix}/services/{service}/".encode()
        body = {"key": _b64(root), "range_end": _b64(_prefix_end(root))}
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout)
        error: Exception = httpx.ConnectError("no etcd endpoint given")
        for url in self._urls:
            try:
                reply = await self._http.post(url, json=body)
                reply.raise_for_status()
                listed = reply.json()
            except httpx.HTTPError as exc:
                error = exc
                continue
            members = []
            for kv in listed.get("kvs", []):
                instance = base64.b64decode(kv["key"]).decode()[len(root) :]
                value = json.loads(base64.b64decode(kv.get("value", "")))
                members.append((instance, str(value["address"])))
            return [address for _, address in sorted(members)]
        raise error

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._known.clear()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with ``prefix``"."""
    return prefix[:-1] + bytes([prefix[-1] + 1])

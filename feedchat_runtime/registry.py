"""The etcd registry: one leased session per process, registrations, and live membership.

Layout under the configured prefix (default ``/feedchat``)::

    <prefix>/services/<service>/<instance>  -> JSON {address, version, started_at, ...}

Both registrations and Snowflake worker-id claims hang off the process's one lease
(:class:`EtcdSession`). When the lease is lost (etcd restarted without its data, a long
pause), the session grants a new lease and asks every holder to attach its keys again, so
a live process comes back into the registry without restarting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions

logger = logging.getLogger(__name__)

LeaseCallback = Callable[[int], Awaitable[None]]


def etcd_client(endpoints: str, timeout: int = 2) -> aetcd.Client:
    """An aetcd client for ``host:port``, or a comma-separated list of ``ip:port``.

    aetcd dials ``f"{host}:{port}"``; for a list we hand it gRPC's ``ipv4:`` target syntax
    (``ipv4:a:1,b:2,c:3``) so the channel fails over between the members of an etcd
    cluster. The unary timeout keeps a dead etcd from hanging a caller.
    """
    head, _, port = endpoints.strip().rpartition(":")
    if "," in endpoints:
        head = "ipv4:" + head
    return aetcd.Client(host=head, port=int(port), timeout=timeout)


class EtcdSession:
    """An etcd client plus one lease, kept alive in the background.

    ``valid_until`` (monotonic seconds) is how long this process may still trust that its
    leased keys exist: the last successful keep-alive plus the TTL etcd granted, minus a
    safety margin. Holders of exclusive claims stop using them once it has passed.
    """

    def __init__(self, endpoint: str, prefix: str = "/feedchat", ttl: int = 5) -> None:
        self.prefix = prefix.rstrip("/")
        self.ttl = ttl
        self.client = etcd_client(endpoint, timeout=max(1, ttl // 2))
        self.lease_id: int | None = None
        self.valid_until = 0.0
        self._callbacks: list[LeaseCallback] = []
        self._ticks: list[Callable[[], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._lease_ready = asyncio.Event()

    def key(self, *parts: str) -> bytes:
        """``<prefix>/part/part`` as bytes."""
        return "/".join((self.prefix, *parts)).encode()

    @property
    def valid(self) -> bool:
        return self.lease_id is not None and time.monotonic() < self.valid_until

    def on_new_lease(self, callback: LeaseCallback) -> None:
        """Run ``callback(lease_id)`` now (if a lease is held) and after every re-grant."""
        self._callbacks.append(callback)

    def on_keepalive(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback()`` after every successful keep-alive (every ttl/3 seconds) while
        the session lives; it should not raise (failures are logged)."""
        self._ticks.append(callback)

    async def start(self) -> None:
        """Connect, grant the first lease, start keeping it alive."""
        await self.client.connect()
        await self._grant()
        self._task = asyncio.create_task(self._keepalive(), name="etcd-keepalive")

    async def wait_lease(self) -> int:
        await self._lease_ready.wait()
        assert self.lease_id is not None
        return self.lease_id

    async def _grant(self) -> None:
        started = time.monotonic()
        lease = await self.client.lease(self.ttl)
        self.lease_id = lease.id
        self.valid_until = started + lease.ttl - self._margin()
        self._lease_ready.set()
        logger.info("etcd lease granted", extra={"lease": lease.id, "ttl": lease.ttl})
        try:
            for callback in list(self._callbacks):
                await callback(lease.id)
        except BaseException:
            # A holder could not attach its key (etcd flaked mid-way). Drop this lease so
            # the keep-alive loop grants a new one and runs every callback again; keeping it
            # would leave a live lease with that key missing for good.
            self.lease_id = None
            self.valid_until = 0.0
            with contextlib.suppress(Exception):
                await self.client.revoke_lease(lease.id)
            raise

    def _margin(self) -> float:
        return min(1.0, self.ttl / 4)

    async def _keepalive(self) -> None:
        interval = self.ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if self.lease_id is None:
                    await self._grant()
                    continue
                sent = time.monotonic()
                reply = await self.client.refresh_lease(self.lease_id)
                if reply is None or reply.TTL <= 0:
                    logger.warning("etcd lease lost; re-attaching", extra={"lease": self.lease_id})
                    self.lease_id = None
                    self.valid_until = 0.0
                    await self._grant()
                else:
                    self.valid_until = sent + reply.TTL - self._margin()
                    for tick in list(self._ticks):
                        try:
                            await tick()
                        except Exception:
                            logger.exception("keep-alive callback failed")
            except Exception as exc:  # etcd down, or a holder failed to re-attach: retry soon
                logger.warning("etcd keep-alive failed: %s", exc)
                interval = 1.0
                continue
            interval = self.ttl / 3

    async def close(self, revoke: bool = True) -> None:
        """Stop keeping alive; with ``revoke`` every leased key vanishes at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if revoke and self.lease_id is not None:
            with contextlib.suppress(aetcd.exceptions.ClientError, asyncio.TimeoutError):
                await self.client.revoke_lease(self.lease_id)
        self.lease_id = None
        self.valid_until = 0.0
        await self.client.close()


@dataclass(frozen=True)
class Member:
    """One registered instance of a service."""

    service: str
    instance: str
    address: str
    version: str = ""
    started_at: float = 0.0
    pid: int = 0
    metrics: str = ""
    """URL of the instance's Prometheus endpoint (``http://host:port/metrics``)."""

    @classmethod
    def from_json(cls, service: str, instance: str, raw: bytes) -> Member:
        data = json.loads(raw)
        return cls(
            service=service,
            instance=instance,
            address=str(data["address"]),
            version=str(data.get("version", "")),
            started_at=float(data.get("started_at", 0.0)),
            pid=int(data.get("pid", 0)),
            metrics=str(data.get("metrics", "")),
        )


class Registration:
    """This process's entry under ``<prefix>/services/<service>/<instance>``."""

    def __init__(self, session: EtcdSession, member: Member) -> None:
        self.session = session
        self.member = member
        self._key = session.key("services", member.service, member.instance)
        self._active = False

    async def register(self) -> None:
        self._active = True
        self.session.on_new_lease(self._put)
        await self._put(await self.session.wait_lease())

    async def _put(self, lease_id: int) -> None:
        if not self._active:
            return
        value = json.dumps(
            {
                "address": self.member.address,
                "version": self.member.version,
                "started_at": self.member.started_at,
                "pid": self.member.pid,
                "metrics": self.member.metrics,
            }
        ).encode()
        await self.session.client.put(self._key, value, lease=lease_id)
        logger.info(
            "registered", extra={"service": self.member.service, "address": self.member.address}
        )

    async def deregister(self) -> None:
        """Remove the entry now (shutdown deregisters before it drains)."""
        self._active = False
        with contextlib.suppress(aetcd.exceptions.ClientError, asyncio.TimeoutError):
            await self.session.client.delete(self._key)


async def list_members(client: aetcd.Client, prefix: str, service: str = "") -> list[Member]:
    """Every registered instance (of one service, or all) right now."""
    root = f"{prefix.rstrip('/')}/services/"
    result = await client.get_prefix((root + (f"{service}/" if service else "")).encode())
    members = []
    for kv in result:
        svc, _, instance = kv.key.decode()[len(root) :].partition("/")
        with contextlib.suppress(ValueError, KeyError):
            members.append(Member.from_json(svc, instance, kv.value))
    return sorted(members, key=lambda m: (m.service, m.instance))


class ServiceWatch:
    """A live view of one service's members, kept current through etcd watches.

    It lists the prefix, then watches from the next revision; on any failure (etcd down,
    restarted, the revision compacted) it lists again, so the view converges to the truth.
    ``listeners`` are called (synchronously) with the new member map after each change.
    """

    def __init__(self, session: EtcdSession, service: str) -> None:
        self.session = session
        self.service = service
        self.members: dict[str, Member] = {}
        self.listeners: list[Callable[[dict[str, Member]], Any]] = []
        self._prefix = session.key("services", service) + b"/"
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.service}")
        await self._synced.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Member]], bool],
        timeout: float,  # noqa: ASYNC109
    ) -> dict[str, Member]:
        """Wait until ``predicate(members)`` holds (used by tests and start-up)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.members))
        return dict(self.members)

    async def _publish(self, members: dict[str, Member]) -> None:
        if members == self.members:
            return
        self.members = members
        for listener in list(self.listeners):
            try:
                listener(dict(members))
            except Exception:
                logger.exception("membership listener failed")
        async with self._changed:
            self._changed.notify_all()

    def _parse(self, key: bytes, value: bytes) -> Member | None:
        instance = key[len(self._prefix) :].decode()
        try:
            return Member.from_json(self.service, instance, value)
        except (ValueError, KeyError):
            logger.warning("ignoring malformed registry entry %r", key)
            return None

    async def _run(self) -> None:
        client = self.session.client
        backoff = 0.2
        while True:
            try:
                listing = await client.get_prefix(self._prefix)
                members = {}
                for kv in listing:
                    member = self._parse(kv.key, kv.value)
                    if member is not None:
                        members[member.instance] = member
                await self._publish(members)
                self._synced.set()
                watch = await client.watch_prefix(
                    self._prefix, start_revision=listing.header.revision + 1
                )
                backoff = 0.2
                async for event in watch:
                    members = dict(self.members)
                    instance = event.kv.key[len(self._prefix) :].decode()
                    if event.kind == "PUT":
                        member = self._parse(event.kv.key, event.kv.value)
                        if member is not None:
                            members[instance] = member
                    else:
                        members.pop(instance, None)
                    await self._publish(members)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # etcd down, restarted, or revision compacted
                logger.warning("watch of %s broke (%s); listing again", self.service, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

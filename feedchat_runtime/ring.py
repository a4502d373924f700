"""The consistent-hash ring of chat servers, computed identically in every process.

Every process that needs ``owner(user_id)`` — the router and each chat server — builds a
:class:`Ring` from the same etcd membership (service ``chat``). The ring is a function of
that membership alone: node names are the registry instance names, every node gets the
same vnodes and weight, and nodes are always inserted in sorted order (so even a vnode hash
collision resolves the same way everywhere). Two processes that see the same members
therefore agree on every owner, and on :attr:`Ring.version`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from uhashring import HashRing

from feedchat_runtime.registry import EtcdSession, Member, ServiceWatch

logger = logging.getLogger(__name__)

CHAT_SERVICE = "chat"
"""Registry name of the chat servers that form the ring."""
VNODES = 160
"""Virtual nodes per chat server (uhashring's default for its md5 ring)."""
OWNER_CACHE = 100_000
"""Owners remembered per ring snapshot (an md5 ring lookup per message recipient adds up)."""
VERSIONS_KEPT = 64
"""Past ring versions a :class:`RingWatch` remembers (to tell a stale version from a new one)."""


def ring_version(members: Mapping[str, Member]) -> int:
    """A 63-bit hash of the sorted (instance, address) pairs: equal membership, equal version."""
    text = "\n".join(f"{name}={members[name].address}" for name in sorted(members))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Ring:
    """An immutable snapshot of the ring."""

    members: dict[str, Member] = field(default_factory=dict)
    version: int = field(default_factory=lambda: ring_version({}))
    _ring: Any = field(default=None, repr=False, compare=False)
    _owners: dict[int, Member] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, members: Mapping[str, Member]) -> Ring:
        ordered = {name: members[name] for name in sorted(members)}
        ring = None
        if ordered:
            nodes = {
                name: {"hostname": member.address, "vnodes": VNODES, "weight": 1}
                for name, member in ordered.items()
            }
            ring = HashRing(nodes=nodes)
        return cls(ordered, ring_version(ordered), ring)

    def owner(self, user_id: int) -> Member | None:
        """The chat server that owns ``user_id``, or None when the ring is empty."""
        member = self._owners.get(user_id)
        if member is not None:
            return member
        if self._ring is None:
            return None
        member = self.members[str(self._ring.get_node(str(user_id)))]
        if len(self._owners) >= OWNER_CACHE:  # a snapshot is immutable: any entry stays right
            self._owners.clear()
        self._owners[user_id] = member
        return member

    def without(self, instance: str) -> Ring:
        """The ring as it will be once ``instance`` has left (used while draining)."""
        return Ring.build({n: m for n, m in self.members.items() if n != instance})


RingListener = Callable[[Ring, Ring], object]
"""Called with (old ring, new ring) after every membership change."""


class RingWatch:
    """The live ring: a :class:`ServiceWatch` on ``chat`` turned into :class:`Ring` snapshots."""

    def __init__(self, session: EtcdSession, service: str = CHAT_SERVICE) -> None:
        self.watch = ServiceWatch(session, service)
        self.ring = Ring()
        self.listeners: list[RingListener] = []
        self.watch.listeners.append(self._on_members)
        self._versions: deque[int] = deque([self.ring.version], maxlen=VERSIONS_KEPT)

    def seen(self, version: int) -> bool:
        """Whether this process's ring is, or recently was, at ``version``."""
        return version in self._versions

    def _on_members(self, members: dict[str, Member]) -> None:
        old, self.ring = self.ring, Ring.build(members)
        if self.ring.version != old.version:
            self._versions.append(self.ring.version)
        logger.info(
            "chat ring changed: %s (version %s)", ",".join(sorted(members)), self.ring.version
        )
        for listener in list(self.listeners):
            try:
                listener(old, self.ring)
            except Exception:
                logger.exception("ring listener failed")

    async def start(self) -> None:
        await self.watch.start()

    async def stop(self) -> None:
        await self.watch.stop()

    @staticmethod
    def _changed_from(version: int) -> Callable[[dict[str, Member]], bool]:
        def changed(members: dict[str, Member]) -> bool:
            return ring_version(members) != version

        return changed

    async def wait_for(
        self,
        predicate: Callable[[Ring], bool],
        timeout: float,  # noqa: ASYNC109
    ) -> Ring:
        """Wait until ``predicate(ring)`` holds (tests, start-up)."""
        async with asyncio.timeout(timeout):
            while not predicate(self.ring):
                await self.watch.wait_for(self._changed_from(self.ring.version), timeout)
        return self.ring

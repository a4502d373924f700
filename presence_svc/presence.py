"""Presence rules: devices, heartbeats, disconnects, the offline sweep, batch lookups.

A user is online while any of their devices is (a device is a Connect stream that
heartbeats within ``offline_timeout``), away while every live device says away, offline
otherwise. The state lives in Redis (see :mod:`presence_svc.store`), so any instance can
hold any device and several instances agree.

Why an idempotent sweep rather than a leader elected in etcd: every instance sweeps the
users whose deadline passed, and the per-user sweep is a Lua compare-and-set that flips
and publishes only if the stored state still differs from what the live devices say, so
when two instances sweep the same user, Redis runs one script after the other and the
second finds nothing to do: each transition is published once. Unlike a leader, nothing
has to fail over (a dead leader's lease would hold every offline transition back by up to
its TTL), and etcd being briefly away does not stop users from going offline. The cost is
that instances repeat each other's index reads, which are small.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from feedchat_runtime.clock import Clock, wall_ms
from feedchat_runtime.errors import InvalidArgument, ResourceExhausted
from presence_svc.config import PresenceConfig
from presence_svc.store import SWEEP_BUCKETS, Beat, PresenceStore, StoredState

logger = logging.getLogger(__name__)

FLUSH_AT = 512
"""Queued heartbeats that are written at once instead of waiting for the flush window."""


class Status(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Presence:
    """One user's presence; times are None for a user never seen."""

    user_id: int
    status: Status
    last_seen_ms: int | None
    since_ms: int | None
    version: int


def presence_of(state: StoredState) -> Presence:
    status = Status(state.status) if state.status else Status.OFFLINE
    return Presence(state.user_id, status, state.seen_ms, state.since_ms, state.version)


@dataclass
class Device:
    """One open Connect stream of a user, on this instance."""

    user_id: int
    conn_id: str
    status: str = Status.ONLINE.value


MAX_HELD_DEVICE_ID = 64


def held_device(user_id: int, device_id: str) -> Device:
    """A device another service holds for its user (a chat long-poll client), known by its
    client's device id; its connection id cannot collide with a Connect stream's (hex)."""
    return Device(user_id, f"held:{device_id}")


class PresenceTracker:
    """Writes heartbeats (batched), disconnects and sweeps; answers lookups."""

    def __init__(
        self, store: PresenceStore, config: PresenceConfig, clock: Clock = wall_ms
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._timeout_ms = int(config.offline_timeout * 1000)
        self._pending: dict[str, Beat] = {}
        self._flushing: set[str] = set()
        self._flushed = asyncio.Event()
        self._wake = asyncio.Event()
        self._urgent = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.heartbeats_written = 0
        self.swept_transitions = 0
        self.sweep_rounds = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="presence-heartbeats"),
            asyncio.create_task(self._sweep_loop(), name="presence-sweep"),
        ]

    async def stop(self) -> None:
        # A flag as well as cancel(): a cancellation that lands inside a Redis call can be
        # absorbed by the client's reconnect logic, and the loop must still end.
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self._flush()

    def _beat(self, device: Device, status: str) -> Beat:
        now = self._clock()
        return Beat(device.user_id, device.conn_id, status, now, now + self._timeout_ms)

    async def connect(self, user_id: int) -> Device:
        """Register a new device, online, before its stream gets its first frame."""
        device = Device(user_id, uuid.uuid4().hex)
        settled = await self._store.heartbeat(self._beat(device, Status.ONLINE.value))
        if settled.rejected:
            raise ResourceExhausted(
                f"at most {self._config.max_devices} devices of a user may be connected",
                reason="TOO_MANY_DEVICES",
            )
        return device

    def heartbeat(self, device: Device, status: Status | None) -> None:
        """Queue a heartbeat; written with others within ``heartbeat_flush`` seconds.

        A device's heartbeats queued in one window collapse into the latest, so a client
        that heartbeats too often costs no extra Redis work. A heartbeat that changes the
        device's status is written without waiting for the window (it may be a transition
        that watchers are waiting for).
        """
        if status is Status.OFFLINE:
            raise InvalidArgument.field(
                "heartbeat.status", "must be ONLINE, AWAY or unset (close the stream instead)"
            )
        previous = self._pending.get(device.conn_id)
        value = status.value if status is not None else (previous.status if previous else "")
        self._pending[device.conn_id] = self._beat(device, value)
        if status is not None and status.value != device.status:
            device.status = status.value
            self._urgent = True
            self._wake.set()
        elif len(self._pending) == 1 or len(self._pending) >= FLUSH_AT:
            self._wake.set()

    async def disconnect(self, device: Device) -> None:
        """The device's stream ended cleanly: drop it at once (offline if it was the last)."""
        self._pending.pop(device.conn_id, None)
        # A heartbeat of this device already on its way to Redis must land first, or it
        # would bring the device back after its removal.
        while device.conn_id in self._flushing:
            self._flushed.clear()
            await self._flushed.wait()
        await self._store.disconnect(device.user_id, device.conn_id, self._clock())

    async def lookup(self, user_ids: Sequence[int]) -> list[Presence]:
        """The presence of each id, in order (never-seen users are offline)."""
        return [presence_of(s) for s in await self._store.states(user_ids)]

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._flushing = set(batch)
        try:
            results = await self._store.heartbeats(list(batch.values()))
            self.heartbeats_written += len(results)
        finally:
            self._flushing = set()
            self._flushed.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            if not self._urgent and len(self._pending) < FLUSH_AT:
                await self._pause(self._config.heartbeat_flush)
            self._urgent = False
            try:
                await self._flush()
            except (RedisError, OSError) as exc:
                # The devices heartbeat again within their interval; the next one retries.
                logger.warning("writing heartbeats failed: %s", exc)
            if self._pending:
                self._wake.set()

    async def sweep_once(self) -> int:
        """Settle every user whose deadline passed; returns the transitions this made."""
        now = self._clock()
        made = 0
        for bucket in range(SWEEP_BUCKETS):
            while True:
                due = await self._store.due(bucket, now, self._config.sweep_batch)
                if not due:
                    break
                results = await self._store.sweep(bucket, due, now)
                made += sum(1 for r in results if r.changed)
                if len(due) < self._config.sweep_batch:
                    break
        self.swept_transitions += made
        self.sweep_rounds += 1
        return made

    async def _sweep_loop(self) -> None:
        interval = self._config.sweep_interval
        # Instances start at different offsets so they rarely sweep at the same moment.
        await self._pause(random.uniform(0, interval))
        while not self._stopping.is_set():
            try:
                made = await self.sweep_once()
                if made:
                    logger.debug("sweep made %s transitions", made)
            except (RedisError, OSError) as exc:
                logger.warning("presence sweep failed: %s", exc)
            await self._pause(interval)

"""Snowflake ids: 41 bits of milliseconds, 10 bits of worker id, 12 bits of sequence.

Ids are unique across processes because each process claims a worker id in etcd (a
transaction that creates ``<prefix>/snowflake/workers/<id>`` only if absent, under the
process's lease), and time-sortable because the timestamp leads. A process whose claim has
lapsed raises :class:`~feedchat_runtime.errors.Unavailable` instead of issuing ids until it
holds a claim again. When the clock steps backwards the generator keeps counting from the
last timestamp it used (borrowing from the future) rather than ever reusing an id.

That covers one process. Across restarts each worker id has a **high-water mark** in etcd,
``<prefix>/snowflake/hwm/<id>`` (not leased, so it outlives its holder): the holder only
issues ids with timestamps below it, and keeps it ``window_ms`` ahead of its clock (written
at the claim and on every lease keep-alive, only while the claim is still ours). A process
that claims the id later starts at the mark, whatever its clock says, so a restart on a
clock that went back never reissues an id. If the mark cannot be moved (etcd down), ids
stop when the clock reaches it, as they stop when the lease lapses.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from typing import Protocol

from feedchat_runtime.clock import wall_ms
from feedchat_runtime.errors import Unavailable
from feedchat_runtime.registry import EtcdSession

logger = logging.getLogger(__name__)

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
HWM_WINDOW_MS = 10_000
"""How far ahead of its clock a holder keeps its worker id's high-water mark."""


class IdBounds(Protocol):
    """The timestamps a worker-id claim may use: ``floor_ms`` <= ms < ``limit_ms``."""

    epoch: int
    """Changes with every new claim."""
    floor_ms: int
    """The previous holders' high-water mark: their ids all lie below it."""
    limit_ms: int
    """Our own high-water mark, as persisted in etcd."""


def compose(ms: int, worker: int, sequence: int) -> int:
    """The id for a Unix-epoch millisecond, worker and sequence."""
    return ((ms - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | (worker << SEQUENCE_BITS) | sequence


def timestamp_ms(snowflake: int) -> int:
    """The Unix-epoch millisecond an id was issued at."""
    return (snowflake >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS


def worker_of(snowflake: int) -> int:
    return (snowflake >> SEQUENCE_BITS) & MAX_WORKER


class SnowflakeGenerator:
    """Issues strictly increasing ids for one worker id.

    Args:
        worker_id: Returns the current worker id, or None while no claim is held.
        clock: Milliseconds since the Unix epoch (injected for tests).
        bounds: The claim's persisted high-water marks (None: no cross-restart safety,
            for tests and tools without etcd).
    """

    def __init__(
        self,
        worker_id: Callable[[], int | None],
        clock: Callable[[], int] = wall_ms,
        bounds: IdBounds | None = None,
    ) -> None:
        self._worker_id = worker_id
        self._clock = clock
        self._bounds = bounds
        self._last_ms = 0
        self._sequence = 0

    def next_id(self) -> int:
        worker = self._worker_id()
        if worker is None:
            raise Unavailable(
                "no Snowflake worker id is held; retry shortly", reason="ID_GENERATOR_UNAVAILABLE"
            )
        now = self._clock()
        bounds = self._bounds
        if bounds is not None:
            now = max(now, bounds.floor_ms)  # never below what earlier holders reached
        if now > self._last_ms:
            self._last_ms = now
            self._sequence = 0
        else:
            # Same millisecond, or the clock went backwards: keep counting from the last
            # timestamp used; when its sequence runs out, move that timestamp forward.
            self._sequence += 1
            if self._sequence > MAX_SEQUENCE:
                self._last_ms += 1
                self._sequence = 0
        if bounds is not None and self._last_ms >= bounds.limit_ms:
            raise Unavailable(
                "Snowflake ids are reserved in etcd only up to a high-water "
                "mark that could not be moved; retry shortly",
                reason="ID_GENERATOR_UNAVAILABLE",
            )
        return compose(self._last_ms, worker, self._sequence)


class WorkerIdClaim:
    """An exclusive worker id held in etcd under the session lease.

    ``current()`` is the id while the lease is trusted, else None. After the lease is
    re-granted the claim is made again (maybe for another id). The claim also holds the
    id's high-water mark (see the module docstring): it is an :class:`IdBounds`.

    Args:
        clock: Milliseconds since the Unix epoch (injected for tests).
        window_ms: How far ahead of the clock the high-water mark is kept.
        worker_ids: The ids to try (default all 1024, from a random start).
    """

    def __init__(
        self,
        session: EtcdSession,
        *,
        clock: Callable[[], int] = wall_ms,
        window_ms: int = HWM_WINDOW_MS,
        worker_ids: Iterable[int] | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.window_ms = window_ms
        self.worker_ids = list(worker_ids) if worker_ids is not None else None
        self.worker_id: int | None = None
        self.epoch = 0
        self.floor_ms = 0
        self.limit_ms = 0
        self._token = b""

    async def acquire(self) -> int:
        self.session.on_new_lease(self._claim)
        self.session.on_keepalive(self._advance)
        await self._claim(await self.session.wait_lease())
        assert self.worker_id is not None
        return self.worker_id

    def current(self) -> int | None:
        return self.worker_id if self.session.valid else None

    def _keys(self, worker: int) -> tuple[bytes, bytes]:
        """(the leased claim key, the high-water mark key) of a worker id."""
        return (
            self.session.key("snowflake", "workers", f"{worker:04d}"),
            self.session.key("snowflake", "hwm", f"{worker:04d}"),
        )

    def _candidates(self) -> list[int]:
        if self.worker_ids is not None:
            return self.worker_ids
        start = random.randrange(MAX_WORKER + 1)
        return [(start + offset) % (MAX_WORKER + 1) for offset in range(MAX_WORKER + 1)]

    async def _claim(self, lease_id: int) -> None:
        self.worker_id = None
        client = self.session.client
        token = f"lease-{lease_id:x}".encode()
        for candidate in self._candidates():
            key, mark = self._keys(candidate)
            ok, replies = await client.transaction(
                compare=[client.transactions.create(key) == 0],
                success=[
                    client.transactions.put(key, token, lease=lease_id),
                    client.transactions.get(mark),
                ],
                failure=[],
            )
            if ok:
                found = replies[1]
                floor = int(found[0][0]) if found else 0
                limit = max(self.clock(), floor) + self.window_ms
                await client.put(mark, str(limit).encode())  # ours now: no other writer
                self._token = token
                self.floor_ms, self.limit_ms = floor, limit
                self.epoch += 1
                self.worker_id = candidate  # last: the generator sees whole bounds
                logger.info(
                    "claimed snowflake worker id", extra={"worker_id": candidate, "floor_ms": floor}
                )
                return
        raise Unavailable("all 1024 Snowflake worker ids are taken", reason="NO_WORKER_ID")

    async def _advance(self) -> None:
        """Keep the high-water mark ``window_ms`` ahead of the clock, while the claim is
        still ours (the transaction checks the claim key still holds our token)."""
        worker = self.worker_id
        limit = self.clock() + self.window_ms
        if worker is None or limit <= self.limit_ms:
            return
        client = self.session.client
        key, mark = self._keys(worker)
        ok, _ = await client.transaction(
            compare=[client.transactions.value(key) == self._token],
            success=[client.transactions.put(mark, str(limit).encode())],
            failure=[],
        )
        if ok and worker == self.worker_id:
            self.limit_ms = max(self.limit_ms, limit)

    def generator(self) -> SnowflakeGenerator:
        return SnowflakeGenerator(self.current, self.clock, self)

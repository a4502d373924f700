"""Snowflake ids: 41 bits of milliseconds, 10 bits of worker id, 12 bits of sequence.

Ids are unique across processes because each process claims a worker id in etcd (a
transaction that creates ``<prefix>/snowflake/workers/<id>`` only if absent, under the
process's lease), and time-sortable because the timestamp leads. A process whose claim has
lapsed raises :class:`~feedchat_runtime.errors.Unavailable` instead of issuing ids until it
holds a claim again. When the clock steps backwards the generator keeps counting from the
last timestamp it used (borrowing from the future) rather than ever reusing an id.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from feedchat_runtime.errors import Unavailable
from feedchat_runtime.registry import EtcdSession

logger = logging.getLogger(__name__)

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


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
    """

    def __init__(
        self,
        worker_id: Callable[[], int | None],
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._worker_id = worker_id
        self._clock = clock
        self._last_ms = 0
        self._sequence = 0

    def next_id(self) -> int:
        worker = self._worker_id()
        if worker is None:
            raise Unavailable("no Snowflake worker id is held; retry shortly",
                              reason="ID_GENERATOR_UNAVAILABLE")
        now = self._clock()
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
        return compose(self._last_ms, worker, self._sequence)


class WorkerIdClaim:
    """An exclusive worker id held in etcd under the session lease.

    ``current()`` is the id while the lease is trusted, else None. After the lease is
    re-granted the claim is made again (maybe for another id).
    """

    def __init__(self, session: EtcdSession) -> None:
        self.session = session
        self.worker_id: int | None = None

    async def acquire(self) -> int:
        self.session.on_new_lease(self._claim)
        await self._claim(await self.session.wait_lease())
        assert self.worker_id is not None
        return self.worker_id

    def current(self) -> int | None:
        return self.worker_id if self.session.valid else None

    async def _claim(self, lease_id: int) -> None:
        self.worker_id = None
        client = self.session.client
        start = random.randrange(MAX_WORKER + 1)
        for offset in range(MAX_WORKER + 1):
            candidate = (start + offset) % (MAX_WORKER + 1)
            key = self.session.key("snowflake", "workers", f"{candidate:04d}")
            ok, _ = await client.transaction(
                compare=[client.transactions.create(key) == 0],
                success=[client.transactions.put(key, b"claimed", lease=lease_id)],
                failure=[],
            )
            if ok:
                self.worker_id = candidate
                logger.info("claimed snowflake worker id", extra={"worker_id": candidate})
                return
        raise Unavailable("all 1024 Snowflake worker ids are taken", reason="NO_WORKER_ID")

    def generator(self) -> SnowflakeGenerator:
        return SnowflakeGenerator(self.current)

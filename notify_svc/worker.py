"""The queue worker: a Redis Streams consumer of ``notify:queue``.

Guarantees and how they are kept:

- At least once: an entry is acknowledged (and deleted) only after its job is done — all
  devices confirmed, nothing to push, or dead-lettered.
- Crash-safe (the runtime's :class:`~feedchat_runtime.streams.StreamWorker`): a consumer
  that dies leaves its entries pending; every worker sweeps with
  XAUTOCLAIM every ``--claim-interval`` seconds and takes entries idle for more than
  ``--claim-idle`` seconds. A live worker resets the idle time of the entries it still
  works on (XCLAIM JUSTID) every ``claim_idle / 3`` seconds, so a job that is merely
  waiting between retries is not stolen; if one was stolen anyway (a long pause), the
  local copy is cancelled.
- Retries: a job whose push failed is retried in place after an exponential delay with
  jitter: ``d = min(retry_max, retry_base * 2^(attempt-1))``, waiting ``d/2 + rand(0, d/2)``.
- Dead letter: attempts are counted in Redis (``notify:attempts``), so they survive
  crashes. When the count reaches ``--max-attempts`` (or an entry breaks the queue
  contract) the entry is copied to ``notify:dead`` with the error, then acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping

from feedchat_runtime import tracing
from feedchat_runtime.metrics import Counter
from feedchat_runtime.notify_queue import QUEUE_KEY, MalformedJob, parse_job
from feedchat_runtime.streams import ConsumerGroup, StreamWorker, WorkerSettings
from notify_svc.config import NotifyConfig
from notify_svc.delivery import Dispatcher
from notify_svc.store import NotifyStore

logger = logging.getLogger(__name__)

JOBS = Counter(
    "feedchat_notify_jobs",
    "notify:queue entries finished by this instance: delivered, or dead_lettered.",
    ["outcome"],
)
RETRIES = Counter(
    "feedchat_notify_retries",
    "Pushes of a notify:queue entry that failed and are tried again after a backoff.",
)


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): equal jitter."""
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + rand() * delay / 2


class QueueWorker:
    """Consumes ``notify:queue`` as consumer ``consumer`` of the configured group (the
    loops are the runtime's :class:`~feedchat_runtime.streams.StreamWorker`)."""

    def __init__(
        self,
        store: NotifyStore,
        dispatcher: Dispatcher,
        config: NotifyConfig,
        consumer: str,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._config = config
        self._consumer = consumer
        self._rand = rand
        self._clock = clock
        settings = WorkerSettings(
            concurrency=config.concurrency,
            read_block=config.read_block,
            claim_idle=config.claim_idle,
            claim_interval=config.claim_interval,
        )
        group = ConsumerGroup(store.redis, QUEUE_KEY, config.consumer_group, consumer)
        self._worker = StreamWorker(group, self._run, settings, "notify")
        self._stopping = self._worker.stopping

    @property
    def inflight(self) -> int:
        return self._worker.inflight

    async def start(self) -> None:
        await self._worker.start()
        logger.info("queue worker started", extra={"consumer": self._consumer})

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking work; let attempts in progress finish within ``grace`` seconds.

        Jobs waiting between retries stop at once, and jobs still running after the grace
        period are cancelled: either way they stay pending and another worker (or this
        one after a restart) claims them. Finishing the POSTs in flight avoids needless
        duplicate pushes on a rolling restart.
        """
        await self._worker.stop(self._config.grace if grace is None else grace)

    # -- one entry -----------------------------------------------------------------------

    async def _run(self, entry_id: str, fields: Mapping[bytes, bytes] | None) -> None:
        trace = {
            name: raw.decode(errors="replace")
            for name in tracing.FIELDS
            if (raw := (fields or {}).get(name.encode())) is not None
        }
        with tracing.continued("notify job", trace):
            await self._work(entry_id, fields)

    async def _work(self, entry_id: str, fields: Mapping[bytes, bytes] | None) -> None:
        config = self._config
        if fields is None:  # deleted while pending: nothing left to do
            await self._store.finish(self._worker.group, entry_id)
            return
        attempts = await self._store.add_attempt(entry_id)
        if attempts > config.max_attempts:  # crashed or errored on every earlier try
            await self._dead(entry_id, fields, "gave up: every attempt crashed", attempts)
            return
        try:
            job = parse_job(fields)
        except MalformedJob as exc:
            await self._dead(entry_id, fields, f"malformed entry: {exc}", attempts)
            return
        while True:
            failures = await self._dispatcher.handle(job)
            if not failures:
                await self._store.finish(self._worker.group, entry_id)
                JOBS.labels("delivered").inc()
                return
            error = "; ".join(failures)
            if attempts >= config.max_attempts:
                await self._dead(entry_id, fields, error, attempts)
                return
            delay = backoff_delay(attempts, config.retry_base, config.retry_max, self._rand)
            RETRIES.inc()
            logger.info(
                "push of entry %s failed (attempt %d/%d): %s; retrying in %.2fs",
                entry_id,
                attempts,
                config.max_attempts,
                error,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return  # shutting down: left pending, claimed later by a live worker
            attempts = await self._store.add_attempt(entry_id)

    async def _dead(
        self, entry_id: str, fields: Mapping[bytes, bytes], error: str, attempts: int
    ) -> None:
        logger.warning(
            "entry %s goes to notify:dead after %d attempts: %s", entry_id, attempts, error
        )
        await self._store.dead_letter(entry_id, fields, error, attempts, int(self._clock() * 1000))
        await self._store.finish(self._worker.group, entry_id)
        JOBS.labels("dead_lettered").inc()

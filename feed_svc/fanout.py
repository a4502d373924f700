"""Fanout workers: the consumer group that writes posts into followers' feed caches.

A post's first job (``split``) reads only the follower count and the chunk boundaries and
replaces itself with chunk jobs of ``fanout_chunk`` followers, so a large follower list
never becomes one giant job and several workers share it. A chunk job reads its followers
``fanout_batch`` at a time and writes each batch with one script call (active followers
only; an inactive one is skipped and rebuilt on return).

At-least-once: a job is acknowledged (and counted in the post's progress) only after its
writes, in one script that counts it only if its XACK wins. Each worker is one consumer
of the runtime's :class:`~feedchat_runtime.streams.StreamWorker` (one job at a time): it
touches the job it works on every ``fanout_claim_idle / 3`` seconds, so only a dead
worker's job goes idle; another worker claims it with XAUTOCLAIM after
``fanout_claim_idle`` seconds (default 5) and does it again, and removes the dead
worker's name after ``fanout_consumer_expiry``. Re-inserting is a no-op (feed entries are
keyed by post id), so every feed gets the post exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from feed_svc.config import FeedConfig
from feed_svc.keys import entry, pad
from feed_svc.store import FeedStore
from feed_svc.store_queue import Job, job_of
from feedchat_runtime import notify_queue, tracing
from feedchat_runtime.clock import Clock, wall_ms
from feedchat_runtime.metrics import Gauge
from feedchat_runtime.snowflake import timestamp_ms
from feedchat_runtime.streams import Fields, StreamWorker, WorkerSettings

logger = logging.getLogger(__name__)

BatchHook = Callable[[Job, int], Awaitable[None]]
"""Called after each written batch with the job and the batch's size (tests pause here)."""


@dataclass(frozen=True)
class FanoutSettings:
    cache_size: int
    chunk: int
    batch: int
    claim_idle_ms: int
    consumer_expiry_ms: int
    block_ms: int
    inactive_ms: int
    notify_queue_cap: int = 1_000_000
    resume_window_ms: int = 600_000

    @classmethod
    def from_config(cls, config: FeedConfig) -> FanoutSettings:
        return cls(
            cache_size=config.feed_cache_size,
            chunk=config.fanout_chunk,
            batch=config.fanout_batch,
            claim_idle_ms=int(config.fanout_claim_idle * 1000),
            consumer_expiry_ms=int(config.fanout_consumer_expiry * 1000),
            block_ms=int(config.fanout_block * 1000),
            inactive_ms=int(config.inactive_after * 1000),
            notify_queue_cap=config.notify_queue_cap,
            resume_window_ms=int(config.stream_resume_window * 1000),
        )


QUEUE_JOBS = Gauge(
    "feedchat_fanout_queue_jobs", "Fanout jobs queued or being worked (all workers)."
)
QUEUE_LAG = Gauge(
    "feedchat_fanout_queue_lag_seconds",
    "Age of the oldest fanout job not yet done (0 when the queue is empty).",
)


class FanoutWorker:
    """One consumer of the fanout group."""

    def __init__(
        self,
        store: FeedStore,
        settings: FanoutSettings,
        consumer: str,
        on_batch: BatchHook | None = None,
        clock: Clock = wall_ms,
    ) -> None:
        self.store = store
        self.settings = settings
        self.consumer = consumer
        self.on_batch = on_batch
        self.clock = clock
        self.jobs_done = 0
        claim_idle = settings.claim_idle_ms / 1000
        stream = WorkerSettings(
            concurrency=1,  # one job at a time: the chunks of a big post spread over workers
            read_block=min(settings.block_ms, max(50, settings.claim_idle_ms // 2)) / 1000,
            claim_idle=claim_idle,
            claim_interval=max(0.05, claim_idle / 2),
            consumer_expiry=settings.consumer_expiry_ms / 1000,
        )
        self.stream = StreamWorker(
            store.queue.group(consumer),
            self._entry,
            stream,
            f"fanout {consumer}",
            after_sweep=self._report_backlog,
        )

    async def run(self) -> None:
        """Work jobs until cancelled (a job cut short stays pending for a claim)."""
        await self.stream.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stream.stop(grace=0)

    async def step(self) -> int:
        """Claim stale jobs (now and then) or read a new one, and work them (tests)."""
        return await self.stream.step()

    async def _report_backlog(self) -> None:
        waiting, oldest_ms = await self.store.queue.backlog()
        QUEUE_JOBS.set(waiting)
        QUEUE_LAG.set(0.0 if oldest_ms is None else max(0, self.clock() - oldest_ms) / 1000)

    async def _entry(self, entry_id: str, fields: Fields | None) -> None:
        if fields is None:  # deleted while pending: only its acknowledgement is left
            await self.store.queue.forget_job(entry_id)
            return
        await self.handle(job_of(entry_id, fields))

    async def handle(self, job: Job) -> None:
        with tracing.continued(f"fanout {job.kind}", job.trace):
            if job.kind == "split":
                await self.split(job)
            elif job.kind == "alerts":
                await self.alerts(job)
            else:
                await self.chunk(job)
        self.jobs_done += 1

    async def split(self, job: Job) -> None:
        total, ends = await self.store.graph.follower_boundaries(job.author_id, self.settings.chunk)
        chunks: list[tuple[str, str]] = []
        start = ""
        for end in ends:
            chunks.append((start, end))
            start = end
        if total > 0:
            chunks.append((start, ""))
        await self.store.queue.split_job(job, total, chunks, self.clock())

    async def chunk(self, job: Job) -> None:
        written = skipped = 0
        (post,) = await self.store.posts.get_posts([job.post_id])
        if post is not None:  # a post deleted before its fanout is simply not written
            member = entry(job.post_id, job.author_id)
            cutoff = self.clock() - self.settings.inactive_ms
            start, page = job.start, self.settings.chunk
            while True:  # normally one page: the chunk (plus followers who joined since)
                fans = await self.store.graph.follower_batch(job.author_id, start, job.end, page)
                for at in range(0, len(fans), self.settings.batch):
                    batch = fans[at : at + self.settings.batch]
                    w, s = await self.store.timelines.fanout_insert(
                        batch, member, self.settings.cache_size, cutoff, self.clock()
                    )
                    written, skipped = written + w, skipped + s
                    if self.on_batch is not None:
                        await self.on_batch(job, len(batch))
                if len(fans) < page or (job.end and pad(fans[-1]) == job.end):
                    break
                start = pad(fans[-1])
        now = self.clock()
        await self.store.queue.ack_chunk(
            job, written, skipped, now, now - self.settings.resume_window_ms
        )

    async def alerts(self, job: Job) -> None:
        """Queue a ``feed_post`` notify entry for each follower with alerts on for the
        author (celebrities included), in batches; then acknowledge the job."""
        (post,) = await self.store.posts.get_posts([job.post_id])
        recipients = await self.store.alerts.recipients(job.author_id) if post else []
        notice = notify_queue.Notice(
            kind=notify_queue.NotificationKind.FEED_POST,
            channel_id=job.author_id,  # post alerts collapse/mute per author
            message_id=job.post_id,
            sender_id=job.author_id,
            preview=post.text if post else "",
            created_ms=timestamp_ms(job.post_id),
        )
        await self.store.alerts.write(
            job,
            recipients,
            notice,
            tracing.carrier(),  # notify_svc's work continues this post's trace
            self.settings.batch,
            self.settings.notify_queue_cap,
        )


class FanoutPool:
    """``size`` workers as asyncio tasks of this process, consumers ``<name>-<i>``."""

    def __init__(
        self,
        store: FeedStore,
        settings: FanoutSettings,
        name: str,
        size: int,
        on_batch: BatchHook | None = None,
    ) -> None:
        self.workers = [FanoutWorker(store, settings, f"{name}-{i}", on_batch) for i in range(size)]

    async def start(self) -> None:
        if self.workers:
            await self.workers[0].store.queue.ensure_group()
        for worker in self.workers:
            await worker.stream.start()

    async def stop(self) -> None:
        """Stop the workers; a job cut short stays pending and is claimed later."""
        await asyncio.gather(*(w.stream.stop(grace=0) for w in self.workers))

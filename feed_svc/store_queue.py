"""The fanout job queue in Redis: a stream with one consumer group, and per-post progress.

Both live under the hash tag ``{fanout}``, so acknowledging a job and counting it in its
post's progress is one script (:mod:`feed_svc.scripts`). Acknowledged jobs are deleted from
the stream, so its length is the backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from feed_svc import scripts
from feedchat_runtime import tracing

GROUP = "fanout"
JOBS_KEY = "feed:{fanout}:jobs"
LANDED_KEY = "feed:{fanout}:landed"
"""Stream: feed entries in the order they landed (chunk acknowledged, celebrity post
created), kept for the StreamFeed resume window; its positions are resume tokens."""
CONTROL_CHANNEL = "feed:control"
"""Process-wide notes: ``promoted:<author>`` when an author becomes a celebrity,
``landed:<log position>`` after each landed-log entry."""
PROGRESS_TTL_S = 86400
"""Seconds a post's fanout progress record is kept."""


def progress_key(post_id: int) -> str:
    return f"feed:{{fanout}}:post:{post_id}"


@dataclass(frozen=True)
class Job:
    """One fanout job from the stream: a split job (whole post) or a chunk of followers."""

    job_id: str
    kind: str
    post_id: int
    author_id: int
    start: str  # exclusive lower bound of follower ids ('' = from the first)
    end: str  # inclusive upper bound ('' = to the last)
    trace: dict[str, str] = field(default_factory=dict)
    """The producer's trace context (``traceparent``), when tracing was on."""


class FanoutQueueStore:
    """The queue half of the store: read, claim, split and acknowledge fanout jobs."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._split = redis.register_script(scripts.SPLIT_JOB)
        self._ack_chunk = redis.register_script(scripts.ACK_CHUNK)
        self._touch = redis.register_script(scripts.TOUCH_JOB)
        self._resume_state = redis.register_script(scripts.RESUME_STATE)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(JOBS_KEY, GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_jobs(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        reply: Any = await self.redis.xreadgroup(
            GROUP, consumer, {JOBS_KEY: ">"}, count=count, block=block_ms
        )
        return [_job(i, f) for _, entries in reply or [] for i, f in entries]

    async def claim_jobs(self, consumer: str, min_idle_ms: int, count: int) -> list[Job]:
        """Take over jobs another consumer read but left unacknowledged for too long."""
        reply = await self.redis.xautoclaim(
            JOBS_KEY, GROUP, consumer, min_idle_ms, start_id="0-0", count=count
        )
        entries = reply[1]
        return [_job(i, f) for i, f in entries if f]

    async def backlog(self) -> tuple[int, int | None]:
        """(jobs not yet done, Unix ms of the oldest one or None) -- done jobs are deleted,
        so the stream holds exactly the waiting and running ones."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(JOBS_KEY)
        pipe.xrange(JOBS_KEY, "-", "+", count=1)
        length, oldest = await pipe.execute()
        if not oldest:
            return int(length), None
        first_id = oldest[0][0]
        text = first_id.decode() if isinstance(first_id, bytes) else str(first_id)
        return int(length), int(text.partition("-")[0])

    async def touch_job(self, job: Job, consumer: str) -> bool:
        """Reset the idle time of a job ``consumer`` still works on; False when another
        worker has claimed it meanwhile."""
        touched = await self._touch(keys=[JOBS_KEY], args=[GROUP, job.job_id, consumer])
        return bool(touched)

    async def forget_consumers(self, idle_ms: int, keep: str) -> list[str]:
        """Remove consumers idle for ``idle_ms`` that hold no pending job (dead workers'
        names; a live worker reading with BLOCK is never that idle)."""
        gone = []
        for info in await self.redis.xinfo_consumers(JOBS_KEY, GROUP):
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name != keep and int(info["pending"]) == 0 and int(info["idle"]) >= idle_ms:
                await self.redis.xgroup_delconsumer(JOBS_KEY, GROUP, name)
                gone.append(name)
        return gone

    async def split_job(
        self, job: Job, total: int, chunks: Sequence[tuple[str, str]], now_ms: int
    ) -> bool:
        args: list[Any] = [GROUP, job.job_id, total, now_ms]
        for start, end in chunks:
            args += [job.post_id, job.author_id, start, end]
        done = await self._split(keys=[JOBS_KEY, progress_key(job.post_id)], args=args)
        return bool(done)

    async def ack_chunk(
        self, job: Job, written: int, skipped: int, now_ms: int, log_min_ms: int
    ) -> bool:
        """Acknowledge a chunk job, count it, and (when it wrote any feed) log the post as
        landed; ``log_min_ms`` trims the log to the resume window."""
        member = f"{job.post_id:020d}:{job.author_id}"
        done = await self._ack_chunk(
            keys=[JOBS_KEY, progress_key(job.post_id), LANDED_KEY],
            args=[GROUP, job.job_id, written, skipped, now_ms, member, log_min_ms, CONTROL_CHANNEL],
        )
        return bool(done)

    async def resume_state(
        self, after: str | None, most_landed: int, most_pending: int
    ) -> ResumeState:
        """The landed log's newest position, what was logged after ``after``, and the
        posts of chunk jobs in workers' hands, in one atomic step."""
        mark, landed, more, pending = await self._resume_state(
            keys=[LANDED_KEY, JOBS_KEY],
            args=[GROUP, after or "", most_landed, most_pending],
        )
        return ResumeState(
            _text(mark), [_text(m) for m in landed], bool(more), [_text(m) for m in pending]
        )

    async def progress(self, post_id: int) -> dict[str, str]:
        raw: Any = await self.redis.hgetall(progress_key(post_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def queue_stats(self, now_ms: int) -> tuple[int, int, int]:
        """(jobs in the stream, delivered but unacknowledged, age ms of the oldest unacked).

        Acknowledged jobs are deleted from the stream, so its length is the backlog.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(JOBS_KEY)
        pipe.xpending(JOBS_KEY, GROUP)
        try:
            length, summary = await pipe.execute()
        except aioredis.ResponseError:  # no stream or group yet
            return 0, 0, 0
        oldest = summary.get("min")
        age = 0
        if oldest:
            text = oldest.decode() if isinstance(oldest, bytes) else str(oldest)
            age = max(0, now_ms - int(text.split("-")[0]))
        return int(length), int(summary["pending"]), age


@dataclass(frozen=True)
class ResumeState:
    """See :meth:`FanoutQueueStore.resume_state`; members are ``'<post>:<author>'``."""

    mark: str
    landed: list[str]
    more: bool
    pending: list[str]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _job(job_id: Any, fields: dict[Any, Any]) -> Job:
    get = {
        k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
        for k, v in fields.items()
    }
    return Job(
        job_id=job_id.decode() if isinstance(job_id, bytes) else str(job_id),
        kind=str(get.get("kind", "chunk")),
        post_id=int(get["post"]),
        author_id=int(get["author"]),
        start=str(get.get("from", "")),
        end=str(get.get("to", "")),
        trace={k: str(get[k]) for k in tracing.FIELDS if k in get},
    )

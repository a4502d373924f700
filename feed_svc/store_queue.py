"""The fanout job queue in Redis: a stream with one consumer group, per-post progress, and
the landed log.

All three live under the hash tag ``{fanout}`` (one slot, so one master, on a Redis
Cluster), so queueing a post, acknowledging a job, counting it in its post's progress and
logging the post as landed are each one script (:mod:`feed_svc.scripts`). Acknowledged
jobs are deleted from the stream, so its length is the backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from feed_svc.keys import (
    CONTROL_CHANNEL,
    GROUP,
    JOBS_KEY,
    LANDED_KEY,
    author_channel,
    entry,
    progress_key,
)
from feedchat_runtime import tracing
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import fields, text
from feedchat_runtime.streams import ConsumerGroup, Fields

PROGRESS_TTL_S = 86400
"""Seconds a post's fanout progress record is kept."""


@dataclass(frozen=True)
class PostFanout:
    """How a recorded post is queued."""

    plan: str
    """``pulled`` (a celebrity: announced on the author's channel and logged as landed at
    once, never fanned out), ``whole`` (one chunk job for every follower) or ``split`` (a
    job that splits the follower list into chunk jobs)."""
    followers: int
    alerts: bool
    """Also queue the job that writes the post's alerts (whatever the plan)."""
    now_ms: int
    log_min_ms: int
    """The landed log's trim bound (the resume window)."""


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


class FanoutQueue:
    """Queue, read, claim, split and acknowledge fanout jobs."""

    def __init__(self, redis: RedisClient, scripts: LuaScripts) -> None:
        self.redis = redis
        self.scripts = scripts

    @staticmethod
    def queue_post_keys(post_id: int) -> list[str]:
        return [progress_key(post_id), JOBS_KEY, LANDED_KEY]

    def queue_post(self, pipe: Any, post_id: int, author_id: int, fanout: PostFanout) -> None:
        """Queue (in ``pipe``) a recorded post's fanout, once (see ``scripts.QUEUE_POST``)."""
        job: list[Any] = ["post", post_id, "author", author_id, "from", "", "to", ""]
        for name, value in tracing.carrier().items():
            job += [name, value]
        args = [
            fanout.now_ms,
            fanout.plan,
            fanout.followers,
            "1" if fanout.alerts else "0",
            PROGRESS_TTL_S,
            entry(post_id, author_id),
            fanout.log_min_ms,
            CONTROL_CHANNEL,
            author_channel(author_id),
            *job,
        ]
        self.scripts.queue(pipe, "queue_post", self.queue_post_keys(post_id), args)

    def group(self, consumer: str) -> ConsumerGroup:
        """The fanout consumer group on the job stream, as consumer ``consumer``."""
        return ConsumerGroup(self.redis, JOBS_KEY, GROUP, consumer)

    async def ensure_group(self) -> None:
        await self.group("").ensure()

    async def read_jobs(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        """Read new jobs as ``consumer`` (as a worker does; they stay pending until done)."""
        entries = await self.group(consumer).read(count, block_ms)
        return [job_of(entry_id, fields) for entry_id, fields in entries if fields]

    async def backlog(self) -> tuple[int, int | None]:
        """(jobs not yet done, Unix ms of the oldest one or None) -- done jobs are deleted,
        so the stream holds exactly the waiting and running ones."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(JOBS_KEY)
        pipe.xrange(JOBS_KEY, "-", "+", count=1)
        length, oldest = await pipe.execute()
        if not oldest:
            return int(length), None
        return int(length), int(text(oldest[0][0]).partition("-")[0])

    async def forget_job(self, job_id: str) -> None:
        """Acknowledge a job deleted while pending (there is nothing left to do for it)."""
        await self.redis.xack(JOBS_KEY, GROUP, job_id)

    async def split_job(
        self, job: Job, total: int, chunks: Sequence[tuple[str, str]], now_ms: int
    ) -> bool:
        args: list[Any] = [GROUP, job.job_id, total, now_ms]
        for start, end in chunks:
            args += [job.post_id, job.author_id, start, end]
        done = await self.scripts.call("split_job", [JOBS_KEY, progress_key(job.post_id)], args)
        return bool(done)

    async def ack_chunk(
        self, job: Job, written: int, skipped: int, now_ms: int, log_min_ms: int
    ) -> bool:
        """Acknowledge a chunk job, count it, and (when it wrote any feed) log the post as
        landed; ``log_min_ms`` trims the log to the resume window."""
        member = entry(job.post_id, job.author_id)
        done = await self.scripts.call(
            "ack_chunk",
            [JOBS_KEY, progress_key(job.post_id), LANDED_KEY],
            [GROUP, job.job_id, written, skipped, now_ms, member, log_min_ms, CONTROL_CHANNEL],
        )
        return bool(done)

    async def resume_state(
        self, after: str | None, most_landed: int, most_pending: int
    ) -> ResumeState:
        """The landed log's newest position, what was logged after ``after``, and the
        posts of chunk jobs in workers' hands, in one atomic step."""
        mark, landed, more, pending = await self.scripts.call(
            "resume_state",
            [LANDED_KEY, JOBS_KEY],
            [GROUP, after or "", most_landed, most_pending],
        )
        return ResumeState(
            text(mark), [text(m) for m in landed], bool(more), [text(m) for m in pending]
        )

    async def progress(self, post_id: int) -> dict[str, str]:
        return fields(await self.redis.hgetall(progress_key(post_id)))

    async def queue_stats(self, now_ms: int) -> tuple[int, int, int]:
        """(jobs in the stream, delivered but unacknowledged, age ms of the oldest unacked).

        Acknowledged jobs are deleted from the stream, so its length is the backlog.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(JOBS_KEY)
        pipe.xpending(JOBS_KEY, GROUP)
        try:
            length, summary = await pipe.execute()
        except ResponseError:  # no stream or group yet
            return 0, 0, 0
        oldest = summary.get("min")
        age = 0
        if oldest:
            age = max(0, now_ms - int(text(oldest).split("-")[0]))
        return int(length), int(summary["pending"]), age


@dataclass(frozen=True)
class ResumeState:
    """See :meth:`FanoutQueue.resume_state`; members are ``'<post>:<author>'``."""

    mark: str
    landed: list[str]
    more: bool
    pending: list[str]


def job_of(job_id: str, raw: Fields) -> Job:
    """The job of a stream entry."""
    get = fields(raw)
    return Job(
        job_id=job_id,
        kind=str(get.get("kind", "chunk")),
        post_id=int(get["post"]),
        author_id=int(get["author"]),
        start=str(get.get("from", "")),
        end=str(get.get("to", "")),
        trace={k: str(get[k]) for k in tracing.FIELDS if k in get},
    )

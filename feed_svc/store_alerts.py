"""Post alerts in Redis: who opted in for whose posts, and the writes to notify_svc's queue.

- ``feed:{u<author>}:alerts``   set of follower ids alerted of the author's posts (bounded by
  ``max_alerted_followers``, read with one SMEMBERS per post)
- ``feed:{u<user>}:alerting``   set of author ids the user gets alerts for (bounded by
  ``max_post_alerts``; ListPostAlerts reads it)
- ``notify:queue``              notify_svc's stream; one ``feed_post`` entry per
  (recipient, post), the contract in docs/notify.md

Both sets are caches of the ``alerts`` column of PostgreSQL's ``follows`` table
(:meth:`feed_svc.records.FeedRecords.set_alerts` decides, then :meth:`cache_alerts`
follows); they change together here and in Unfollow's MULTI
(:meth:`feed_svc.store.FeedStore.unfollow`), and are refilled with the follow graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from feed_svc.store_queue import GROUP, JOBS_KEY, Job

NOTIFY_QUEUE = "notify:queue"
PREVIEW_CHARS = 140
"""Longest preview notify_svc keeps (longer ones it would cut anyway)."""


def alerts_key(author: int) -> str:
    return f"feed:{{u{author}}}:alerts"


def alerting_key(user: int) -> str:
    return f"feed:{{u{user}}}:alerting"


class PostAlertStore:
    """The post-alert half of the store."""

    redis: aioredis.Redis

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def cache_alerts(self, user: int, author: int, enabled: bool) -> None:
        """Copy a recorded alerts setting into both sets."""
        pipe = self.redis.pipeline(transaction=True)
        self.alert_writes(pipe, user, author, enabled)
        await pipe.execute()

    @staticmethod
    def alert_writes(pipe: Any, user: int, author: int, enabled: bool) -> None:
        if enabled:
            pipe.sadd(alerting_key(user), str(author))
            pipe.sadd(alerts_key(author), str(user))
        else:
            pipe.srem(alerting_key(user), str(author))
            pipe.srem(alerts_key(author), str(user))

    async def alerting(self, user: int) -> list[int]:
        """Authors ``user`` gets post alerts for, ascending."""
        return sorted(int(m) for m in await self.redis.smembers(alerting_key(user)))

    async def alert_recipients(self, author: int) -> list[int]:
        """Followers alerted of ``author``'s posts, ascending (one SMEMBERS)."""
        return sorted(int(m) for m in await self.redis.smembers(alerts_key(author)))

    async def write_alerts(
        self,
        job: Job,
        recipients: Sequence[int],
        fields: dict[str, str],
        batch: int,
        cap: int,
    ) -> None:
        """One ``feed_post`` entry per recipient in notify:queue, ``batch`` XADDs per round
        trip; then acknowledge (and delete) the alerts job. A crash before the ack makes
        another worker write them all again: notify_svc de-duplicates per (user, post)."""
        for at in range(0, len(recipients), batch):
            pipe = self.redis.pipeline(transaction=False)
            for user in recipients[at : at + batch]:
                body: Any = {**fields, "user_id": str(user)}
                pipe.xadd(NOTIFY_QUEUE, body, maxlen=cap, approximate=True)
            await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(JOBS_KEY, GROUP, job.job_id)
        pipe.xdel(JOBS_KEY, job.job_id)
        await pipe.execute()

"""Post alerts in Redis: who opted in for whose posts, and the writes to notify_svc's queue.

- ``feed:{u<author>}:alerts``   set of follower ids alerted of the author's posts (bounded by
  ``max_alerted_followers``, read with one SMEMBERS per post)
- ``feed:{u<user>}:alerting``   set of author ids the user gets alerts for (bounded by
  ``max_post_alerts``; ListPostAlerts reads it)
- ``notify:queue``              notify_svc's stream; one ``feed_post`` entry per
  (recipient, post), the contract in :mod:`feedchat_runtime.notify_queue`

Both sets are caches of the ``alerts`` column of PostgreSQL's ``follows`` table
(:meth:`feed_svc.records.FeedRecords.set_alerts` decides, then :meth:`PostAlerts.cache`
follows); they change together here, in Unfollow's pipeline
(:meth:`feed_svc.store_graph.GraphCache.unfollow`) and in the graph's refill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from feed_svc import keys
from feed_svc.store_queue import Job
from feedchat_runtime import notify_queue
from feedchat_runtime.redis_client import RedisClient


def alert_writes(pipe: Any, user: int, author: int, enabled: bool) -> None:
    """Queue the change of one alerts setting in both sets (two slots on a cluster)."""
    if enabled:
        pipe.sadd(keys.alerting_key(user), str(author))
        pipe.sadd(keys.alerts_key(author), str(user))
    else:
        pipe.srem(keys.alerting_key(user), str(author))
        pipe.srem(keys.alerts_key(author), str(user))


class PostAlerts:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def cache(self, user: int, author: int, enabled: bool) -> None:
        """Copy a recorded alerts setting into both sets."""
        pipe = self.redis.pipeline(transaction=False)
        alert_writes(pipe, user, author, enabled)
        await pipe.execute()

    async def alerting(self, user: int) -> list[int]:
        """Authors ``user`` gets post alerts for, ascending."""
        return sorted(int(m) for m in await self.redis.smembers(keys.alerting_key(user)))

    async def recipients(self, author: int) -> list[int]:
        """Followers alerted of ``author``'s posts, ascending (one SMEMBERS)."""
        return sorted(int(m) for m in await self.redis.smembers(keys.alerts_key(author)))

    async def write(
        self,
        job: Job,
        recipients: Sequence[int],
        notice: notify_queue.Notice,
        extra: Mapping[str, str],
        batch: int,
        cap: int,
    ) -> None:
        """One ``feed_post`` entry per recipient in notify:queue, ``batch`` XADDs per round
        trip; then acknowledge (and delete) the alerts job. A crash before the ack makes
        another worker write them all again: notify_svc de-duplicates per (user, post)."""
        for at in range(0, len(recipients), batch):
            pipe = self.redis.pipeline(transaction=False)
            notify_queue.enqueue(pipe, notice, recipients[at : at + batch], cap, extra)
            await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(keys.JOBS_KEY, keys.GROUP, job.job_id)
        pipe.xdel(keys.JOBS_KEY, job.job_id)
        await pipe.execute()

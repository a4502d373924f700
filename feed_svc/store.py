"""feed_svc's storage, by composition: small stores over one Redis client (one node or a
Redis Cluster) and the PostgreSQL record. Only these modules talk to Redis.

- :class:`~feed_svc.store_posts.PostCache`: post bodies, authors' post id lists, the
  posting rate;
- :class:`~feed_svc.store_graph.GraphCache`: followers/following lists, celebrities, the
  refill marker;
- :class:`~feed_svc.store_timelines.TimelineCache`: feed caches, activity, open streams,
  merged reads, fanout inserts, live-channel notes;
- :class:`~feed_svc.store_queue.FanoutQueue`: the fanout jobs, progress and landed log;
- :class:`~feed_svc.store_alerts.PostAlerts`: post alert sets and notify_svc's queue;
- :class:`~feed_svc.store_removal.RemovalStore`: deleted accounts' marks and leftovers.

Every key is named in :mod:`feed_svc.keys`; every script is in :mod:`feed_svc.scripts`,
takes its keys through KEYS and touches one hash slot. Follows, posts and post ids here are
caches of the record in PostgreSQL (:mod:`feed_svc.records`): the domain writes there
first, then here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feed_svc import scripts
from feed_svc.records import FeedRecords, StoredPost
from feed_svc.store_alerts import PostAlerts
from feed_svc.store_graph import GraphCache
from feed_svc.store_posts import PostCache
from feed_svc.store_queue import FanoutQueue, PostFanout
from feed_svc.store_removal import RemovalStore
from feed_svc.store_timelines import TimelineCache
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replicas import ReplicaAcks

NO_REPLICA_ACKS = ReplicaAcks(0, 1)


@dataclass(frozen=True)
class FeedStore:
    redis: RedisClient
    records: FeedRecords
    scripts: LuaScripts
    posts: PostCache
    graph: GraphCache
    timelines: TimelineCache
    queue: FanoutQueue
    alerts: PostAlerts
    removals: RemovalStore
    replica_acks: ReplicaAcks = NO_REPLICA_ACKS

    @classmethod
    def over(
        cls,
        redis: RedisClient,
        records: FeedRecords,
        replica_acks: ReplicaAcks = NO_REPLICA_ACKS,
    ) -> FeedStore:
        lua = LuaScripts(redis, scripts.SOURCES)
        return cls(
            redis=redis,
            records=records,
            scripts=lua,
            posts=PostCache(redis, lua, records),
            graph=GraphCache(redis),
            timelines=TimelineCache(redis, lua),
            queue=FanoutQueue(redis, lua),
            alerts=PostAlerts(redis),
            removals=RemovalStore(redis),
            replica_acks=replica_acks,
        )

    async def store_post(self, post: StoredPost, fanout: PostFanout) -> None:
        """Cache a recorded post and queue its fanout (see :meth:`FanoutQueue.queue_post`)
        in one pipeline: on one node one round trip, on a cluster one per node written
        (the body's slot, the author's, ``{fanout}``), in parallel. Idempotent: a retried
        CreatePost runs it again to finish what a crash or a failover cut short.

        With ``--replica-acks``, a WAIT on each node written ends its part of the pipeline
        (same connection, so it covers these writes); too few replicas in time raise
        UNAVAILABLE ``REPLICA_ACK_TIMEOUT``.
        """
        written = PostCache.cached_keys(post) + FanoutQueue.queue_post_keys(post.post_id)
        await self.replica_acks.ready(self.redis)
        waits = 0

        def build(pipe: Any) -> None:
            nonlocal waits
            PostCache.cache_writes(pipe, post)
            self.queue.queue_post(pipe, post.post_id, post.author_id, fanout)
            waits = self.replica_acks.add_waits(pipe, self.redis, written)

        replies = await self.scripts.execute(build, kept=lambda: waits)
        self.replica_acks.check(replies, waits, f"post {post.post_id}")

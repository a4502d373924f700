"""Refill Redis's copies of the record after Redis lost them (wiped, or restarted empty).

The follower/following lists, the post alert sets, each author's post id list and the
celebrity list are caches of PostgreSQL (:mod:`feed_svc.records`). ``WARM_KEY`` in Redis
says they were filled; when it is missing, one instance (holding ``WARMING_KEY``) reads the
record page by page (keyset pagination, ``PAGE`` rows at a time, never one giant list; the
graph twice, in follower order and in author order, so each page is a few ZADDs of many
members) and adds it to the caches, then sets the marker; the others wait for it. A read
gets the marker in its own round trip
(:meth:`feed_svc.store_timelines.TimelineCache.read_context`), so no read serves an
emptied cache as the feed. Writes go on meanwhile:
each lands in PostgreSQL first and then in the caches, so the refill, which only adds, loses
none. (An unfollow racing the page that still held its row can leave a stale cached follow;
a repeated Unfollow repairs it, as Follow and Unfollow always rewrite the cache.) Feed
caches are not refilled here: a reader without one is served from the post id lists and gets
it rebuilt (:mod:`feed_svc.timeline`). Post bodies are refilled one read at a time
(:meth:`feed_svc.store_posts.PostCache.get_posts`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from feed_svc.records import FeedRecords
from feed_svc.store import FeedStore
from feedchat_runtime.errors import Unavailable

logger = logging.getLogger(__name__)

PAGE = 1000
LOCK_TTL_S = 120
CHECK_EVERY_S = 1.0
"""How long a seen marker is trusted without asking Redis again."""


class CacheWarmer:
    """Makes sure the caches of the record are filled before a request relies on them."""

    def __init__(
        self,
        store: FeedStore,
        records: FeedRecords,
        celebrity_threshold: int,
        owner: str,
        wait_s: float = 30.0,
    ) -> None:
        self.store = store
        self.records = records
        self.celebrity_threshold = celebrity_threshold
        self.owner = owner
        self.wait_s = wait_s
        self._checked_at = float("-inf")

    async def ensure(self) -> None:
        """Return once the caches are filled (refilling them here, or waiting for the
        instance that does); UNAVAILABLE if that takes longer than ``wait_s``."""
        if time.monotonic() - self._checked_at < CHECK_EVERY_S:
            return
        deadline = time.monotonic() + self.wait_s
        while not await self.store.graph.is_warm():
            if await self.store.graph.lock_warming(self.owner, LOCK_TTL_S):
                try:
                    await self.refill()
                finally:
                    await self.store.graph.unlock_warming()
                break
            if time.monotonic() > deadline:
                raise Unavailable(
                    "the feed caches are being refilled; retry shortly", reason="CACHE_REFILLING"
                )
            await asyncio.sleep(0.05)
        self._checked_at = time.monotonic()

    def forget(self) -> None:
        """Distrust the last check: a read saw the marker missing."""
        self._checked_at = float("-inf")

    async def refill(self) -> None:
        started = time.monotonic()
        follows = 0
        after = (0, 0)
        while rows := await self.records.follows_after(after, PAGE):
            await self.store.graph.cache_following(rows)
            follows += len(rows)
            after = rows[-1][:2]
        after = (0, 0)
        while pairs := await self.records.followers_after(after, PAGE):
            await self.store.graph.cache_followers(pairs)
            after = pairs[-1]
        posts = 0
        last = 0
        while ids := await self.records.posts_after(last, PAGE):
            await self.store.posts.cache_post_ids(ids)
            posts += len(ids)
            last = ids[-1][0]
        await self.store.graph.promote_all(
            await self.records.popular_authors(self.celebrity_threshold)
        )
        await self.store.graph.set_warm()
        logger.info(
            "refilled the feed caches from PostgreSQL: %d follows, %d posts in %.2fs",
            follows,
            posts,
            time.monotonic() - started,
        )

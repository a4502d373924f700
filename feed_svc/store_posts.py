"""Post caches in Redis: bodies by post id, each author's post id list, the posting rate.

Both are caches of PostgreSQL (:mod:`feed_svc.records`): the domain records a post there
first. Bodies missing here are read from the record and cached again; the id lists are
refilled by :mod:`feed_svc.warmup`. A deleted post's body is replaced by a tombstone for
``TOMBSTONE_TTL`` (not just removed) and refills never overwrite a key: a page read that
fetched the record just before the delete cannot put the deleted body back afterwards.
A delete also tells open streams (``removed:`` on the control channel). A body key has a
slot of its own on a Redis Cluster (readers know only the id), so a page's bodies are
read per slot (:func:`feedchat_runtime.redis_client.mget`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from feed_svc import keys
from feed_svc.records import FeedRecords, StoredPost
from feed_svc.store_graph import add_members
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient, mget

TOMBSTONE = "-"
"""The cached body of a deleted post."""
TOMBSTONE_TTL = 3600
"""Seconds a tombstone stays (far longer than a page read's record query and refill)."""


def body(post: StoredPost) -> str:
    return json.dumps({"a": post.author_id, "t": post.text})


class PostCache:
    def __init__(self, redis: RedisClient, scripts: LuaScripts, records: FeedRecords) -> None:
        self.redis = redis
        self.scripts = scripts
        self.records = records

    async def take_token(self, user: int, rate: float, burst: int, now_ms: int) -> int:
        """0 when a post may go ahead, else milliseconds until one may."""
        ok, wait_ms = await self.scripts.call(
            "take_token", [keys.bucket_key(user)], [rate, burst, now_ms]
        )
        return 0 if int(ok) else int(wait_ms)

    @staticmethod
    def cache_writes(pipe: Any, post: StoredPost) -> None:
        """Queue the caching of a recorded post (body, author's id list) in ``pipe``."""
        pipe.set(keys.post_key(post.post_id), body(post))
        pipe.zadd(keys.user_posts_key(post.author_id), {keys.pad(post.post_id): 0})

    @staticmethod
    def cached_keys(post: StoredPost) -> list[str]:
        """The keys :meth:`cache_writes` writes."""
        return [keys.post_key(post.post_id), keys.user_posts_key(post.author_id)]

    async def get_posts(self, post_ids: Sequence[int]) -> list[StoredPost | None]:
        """The posts in order (None where deleted or unknown): the cached bodies in one
        round trip (per node), and for the bodies it lacks one query of the record (they
        are cached again)."""
        if not post_ids:
            return []
        raws = await mget(self.redis, [keys.post_key(p) for p in post_ids])
        cached: dict[int, StoredPost] = {}
        deleted: set[int] = set()
        for post_id, raw in zip(post_ids, raws, strict=True):
            if raw is not None:
                if raw in (TOMBSTONE, TOMBSTONE.encode()):
                    deleted.add(post_id)
                    continue
                data = json.loads(raw)
                cached[post_id] = StoredPost(post_id, int(data["a"]), str(data["t"]))
        missing = [p for p in post_ids if p not in cached and p not in deleted]
        if missing:
            recorded = await self.records.posts(missing)
            await self.recache(recorded.values())
            cached.update(recorded)
        return [cached.get(p) for p in post_ids]

    async def recache(self, posts: Iterable[StoredPost]) -> None:
        """Cache bodies read from the record, none over a key that is set (a tombstone
        written since the record was read stays)."""
        pipe = self.redis.pipeline(transaction=False)
        for post in posts:
            pipe.set(keys.post_key(post.post_id), body(post), nx=True)
        await pipe.execute()

    async def delete_post(self, post_id: int, author: int) -> None:
        """Take a deleted post out of the caches (its body becomes a tombstone) and tell
        open streams (StreamFeed sends a ``removed`` frame to the author's followers)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.post_key(post_id), TOMBSTONE, ex=TOMBSTONE_TTL)
        pipe.zrem(keys.user_posts_key(author), keys.pad(post_id))
        await pipe.execute()
        await self.redis.publish(keys.CONTROL_CHANNEL, keys.removed_note(post_id, author))

    async def cache_post_ids(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Add recorded (post id, author) pairs to the authors' cached post id lists."""
        await add_members(self.redis, keys.user_posts_key, [(a, post) for post, a in pairs])

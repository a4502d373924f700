"""The follow graph's caches in Redis: each user's followers and following lists, the
celebrity set, and the marker that says these caches (with the post id lists) were filled
from the record.

Both sides of an edge live in different users' slots, so Follow and Unfollow write them
in one pipeline, not a transaction: PostgreSQL holds the edge (written first), and a side
missing after a crash is repaired by the next Follow or Unfollow, which rewrite both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from feed_svc import keys
from feed_svc.store_alerts import alert_writes
from feedchat_runtime.redis_client import RedisClient


async def add_members(
    redis: RedisClient, key: Callable[[int], str], rows: Sequence[tuple[int, int]]
) -> None:
    """ZADD (score 0) each (owner, member) row's padded member to ``key(owner)``, one
    command per owner, in one pipeline."""
    grouped: dict[int, dict[str, int]] = {}
    for owner, member in rows:
        grouped.setdefault(owner, {})[keys.pad(member)] = 0
    pipe = redis.pipeline(transaction=False)
    for owner, members in grouped.items():
        pipe.zadd(key(owner), members)
    await pipe.execute()


class GraphCache:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    # --- edges ------------------------------------------------------------------------
    async def follow(self, follower: int, author: int) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keys.following_key(follower), {keys.pad(author): 0})
        pipe.zadd(keys.followers_key(author), {keys.pad(follower): 0})
        added, _ = await pipe.execute()
        return bool(added)

    async def unfollow(self, follower: int, author: int) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(keys.following_key(follower), keys.pad(author))
        pipe.zrem(keys.followers_key(author), keys.pad(follower))
        alert_writes(pipe, follower, author, False)
        removed, *_ = await pipe.execute()
        return bool(removed)

    async def cache_following(self, rows: Sequence[tuple[int, int, bool]]) -> None:
        """Add recorded (follower, author, alerts on) rows to the followers' cached
        following lists (and the alert sets): one ZADD per follower in the batch."""
        pipe = self.redis.pipeline(transaction=False)
        by_follower: dict[int, dict[str, int]] = {}
        for follower, author, alerts in rows:
            by_follower.setdefault(follower, {})[keys.pad(author)] = 0
            if alerts:
                alert_writes(pipe, follower, author, True)
        for follower, authors in by_follower.items():
            pipe.zadd(keys.following_key(follower), authors)
        await pipe.execute()

    async def cache_followers(self, rows: Sequence[tuple[int, int]]) -> None:
        """Add recorded (author, follower) rows to the authors' cached follower lists:
        one ZADD per author in the batch."""
        await add_members(self.redis, keys.followers_key, rows)

    # --- reads ------------------------------------------------------------------------
    async def following_count(self, user: int) -> int:
        return int(await self.redis.zcard(keys.following_key(user)))

    async def follower_count(self, user: int) -> int:
        return int(await self.redis.zcard(keys.followers_key(user)))

    async def is_following(self, follower: int, author: int) -> bool:
        return await self.redis.zscore(keys.following_key(follower), keys.pad(author)) is not None

    async def following_all(self, user: int) -> list[int]:
        members: Any = await self.redis.zrange(keys.following_key(user), 0, -1)
        return [int(m) for m in members]

    async def graph_page(
        self, user: int, followers: bool, after: int | None, limit: int
    ) -> tuple[list[int], int]:
        """Ids after ``after`` (ascending, ``limit`` of them) and the total count."""
        key = keys.followers_key(user) if followers else keys.following_key(user)
        pipe = self.redis.pipeline(transaction=False)
        low = f"({keys.pad(after)}" if after is not None else "-"
        pipe.zrangebylex(key, low, "+", start=0, num=limit)
        pipe.zcard(key)
        members, total = await pipe.execute()
        return [int(m) for m in members], int(total)

    async def follower_batch(self, author: int, start: str, end: str, limit: int) -> list[int]:
        """Followers with ``start < id <= end`` (padded bounds; '' = open), ascending."""
        lo = f"({start}" if start else "-"
        hi = f"[{end}" if end else "+"
        found = await self.redis.zrangebylex(keys.followers_key(author), lo, hi, start=0, num=limit)
        return [int(m) for m in found]

    async def follower_boundaries(self, author: int, every: int) -> tuple[int, list[str]]:
        """The follower count and the padded id at ranks every-1, 2*every-1, ... (chunk ends)."""
        total = await self.follower_count(author)
        ranks = list(range(every - 1, total - 1, every))
        if not ranks:
            return total, []
        pipe = self.redis.pipeline(transaction=False)
        for rank in ranks:
            pipe.zrange(keys.followers_key(author), rank, rank)
        found = await pipe.execute()
        return total, [m[0].decode() for m in found if m]

    async def author_state(self, author: int) -> tuple[bool, int, int]:
        """(is a celebrity, follower count, followers with post alerts on) in one round
        trip (per node)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember(keys.CELEBRITIES_KEY, str(author))
        pipe.zcard(keys.followers_key(author))
        pipe.scard(keys.alerts_key(author))
        celebrity, count, alerted = await pipe.execute()
        return bool(celebrity), int(count), int(alerted)

    # --- celebrities --------------------------------------------------------------------
    async def promote(self, author: int) -> bool:
        """Mark an author a celebrity; True when they were not one before."""
        return bool(await self.redis.sadd(keys.CELEBRITIES_KEY, str(author)))

    async def promote_all(self, authors: Sequence[int]) -> None:
        if authors:
            await self.redis.sadd(keys.CELEBRITIES_KEY, *(str(a) for a in authors))

    async def celebrities(self) -> set[int]:
        return {int(m) for m in await self.redis.smembers(keys.CELEBRITIES_KEY)}

    async def is_celebrity(self, author: int) -> bool:
        return bool(await self.redis.sismember(keys.CELEBRITIES_KEY, str(author)))

    # --- the refill marker ----------------------------------------------------------------
    async def is_warm(self) -> bool:
        return bool(await self.redis.exists(keys.WARM_KEY))

    async def set_warm(self) -> None:
        await self.redis.set(keys.WARM_KEY, 1)

    async def lock_warming(self, owner: str, ttl_s: int) -> bool:
        """Take the refill lock for ``ttl_s`` seconds; False when another holds it."""
        return bool(await self.redis.set(keys.WARMING_KEY, owner, nx=True, ex=ttl_s))

    async def unlock_warming(self) -> None:
        await self.redis.delete(keys.WARMING_KEY)

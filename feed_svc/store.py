"""Everything feed_svc keeps in Redis: key builders, reads and writes, the Lua scripts.

(The fanout queue's part is in :mod:`feed_svc.store_queue`; the pub/sub listener that
feeds open streams is :mod:`feed_svc.live`.)

Per-user keys share the hash tag ``{u<id>}`` (feed cache, its floor, last-active time,
posts, followers, following, rate bucket), so a script on one user's keys stays in one slot.
The fanout stream and the progress hashes share ``{fanout}``, so acknowledging a job and
counting its progress is one script. Ids in sorted sets are 20-digit zero-padded decimals
with score 0, ordered lexicographically (exact for ids beyond 2^53).

Follows, posts and post ids here are caches of the record in PostgreSQL
(:mod:`feed_svc.records`): the domain writes there first, then here; post bodies missing
here are read from there (and cached again), and :mod:`feed_svc.warmup` refills the rest
after Redis lost it (``WARM_KEY`` missing).

Single-node note: CreatePost, Follow and the fanout batch script touch keys of several
users in one MULTI/script; on Redis Cluster these would be split per slot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from feed_svc import scripts
from feed_svc.records import FeedRecords, StoredPost
from feed_svc.store_alerts import PostAlertStore, alerts_key
from feed_svc.store_queue import (
    CONTROL_CHANNEL,
    GROUP,
    JOBS_KEY,
    LANDED_KEY,
    PROGRESS_TTL_S,
    FanoutQueueStore,
    Job,
    progress_key,
)
from feedchat_runtime import tracing

WIDTH = 20


def pad(value: int) -> str:
    """A uint64 as a fixed-width member that sorts like the number."""
    return f"{value:0{WIDTH}d}"


def entry(post_id: int, author_id: int) -> str:
    """A feed cache member: ``<padded post id>:<author id>``."""
    return f"{pad(post_id)}:{author_id}"


def parse_entry(member: str) -> tuple[int, int]:
    post, _, author = member.partition(":")
    return int(post), int(author)


# Key builders, one per key family.
def post_key(post_id: int) -> str:
    return f"feed:post:{post_id}"


def user_posts_key(user: int) -> str:
    return f"feed:{{u{user}}}:posts"


def feed_key(user: int) -> str:
    return f"feed:{{u{user}}}:tl"


def floor_key(user: int) -> str:
    return f"feed:{{u{user}}}:floor"


def stale_key(user: int) -> str:
    return f"feed:{{u{user}}}:stale"


def ack_key(user: int) -> str:
    return f"feed:{{u{user}}}:ack"


def bucket_key(user: int) -> str:
    return f"feed:{{u{user}}}:rate"


def followers_key(user: int) -> str:
    return f"feed:{{u{user}}}:followers"


def following_key(user: int) -> str:
    return f"feed:{{u{user}}}:following"


def removed_key(user: int) -> str:
    """Set when the user's account was deleted: their posts and follows are refused."""
    return f"feed:{{u{user}}}:removed"


CELEBRITIES_KEY = "feed:celebrities"
WARM_KEY = "feed:warm"
"""Set once the caches of the record (graph, post ids, celebrities) were filled from
PostgreSQL; missing after a wiped Redis, which triggers the refill."""
WARMING_KEY = "feed:warming"
"""The lock of the instance refilling the caches (expires if it dies)."""
ACTIVE_KEY = "feed:active"
"""Hash: user -> ms of their last feed read (fanout skips users not seen recently)."""
STREAMING_KEY = "feed:streaming"
"""Zset: user -> ms until which they have a StreamFeed open (refreshed while open)."""


def live_channel(user: int) -> str:
    """Fanned-out entries (and control notes) for one user's open streams. (The fanout
    script builds the same name: keep them in step.)"""
    return f"feed:live:{user}"


def author_channel(author: int) -> str:
    """Posts of a celebrity author, for the streams of their followers."""
    return f"feed:celebrity:{author}"


@dataclass(frozen=True)
class FeedMeta:
    """What a reader needs to know about a feed cache before using it."""

    size: int
    floor: int
    oldest: int | None
    stale: bool
    warm: bool = True  # False: Redis lost the graph caches (see feed_svc.warmup)


def _body(post: StoredPost) -> str:
    return json.dumps({"a": post.author_id, "t": post.text})


def _range_args(upper: int | None, lower: int | None) -> tuple[str, str]:
    hi = f"({pad(upper)}" if upper is not None else "+"
    lo = f"[{pad(lower)}" if lower is not None else "-"
    return hi, lo


class FeedStore(FanoutQueueStore, PostAlertStore):
    """Typed access to feed_svc's Redis data (the fanout queue's part is inherited);
    post bodies missing from the cache are read from ``records``."""

    def __init__(self, redis: aioredis.Redis, records: FeedRecords) -> None:
        self.redis = redis
        self.records = records
        self._take_token = redis.register_script(scripts.TAKE_TOKEN)
        self._fanout_insert = redis.register_script(scripts.FANOUT_INSERT)
        self._merge = redis.register_script(scripts.MERGE_ENTRIES)
        self._log_landed = redis.register_script(scripts.LOG_LANDED)
        self._remove_entries = redis.register_script(scripts.REMOVE_ENTRIES)
        FanoutQueueStore.__init__(self, redis)
        PostAlertStore.__init__(self, redis)
        self._merge_newest = redis.register_script(scripts.MERGE_NEWEST)

    # --- rate limit -----------------------------------------------------------------
    async def take_token(self, user: int, rate: float, burst: int, now_ms: int) -> int:
        """0 when a post may go ahead, else milliseconds until one may."""
        ok, wait_ms = await self._take_token(keys=[bucket_key(user)], args=[rate, burst, now_ms])
        return 0 if int(ok) else int(wait_ms)

    # --- posts ----------------------------------------------------------------------
    async def create_post(
        self,
        post: StoredPost,
        now_ms: int,
        plan: str,
        followers: int,
        alerts: bool = False,
        log_min_ms: int = 0,
    ) -> None:
        """Cache a recorded post and, in the same transaction, queue its fanout or announce
        it (and, when ``alerts``, a job that writes its post alerts, whatever the plan).

        ``plan``: ``pulled`` (a celebrity: announced on the author's channel, never fanned
        out), ``whole`` (one chunk job for every follower), ``split`` (a job that splits
        the follower list into chunk jobs); a pulled post is logged as landed at once
        (``log_min_ms`` trims the log).
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            self._post_writes(pipe, post, now_ms, plan, followers, alerts)
            if plan == "pulled":
                member = entry(post.post_id, post.author_id)
                await self._log_landed(
                    keys=[LANDED_KEY], client=pipe, args=[member, log_min_ms, CONTROL_CHANNEL]
                )
            await pipe.execute()

    @staticmethod
    def _post_writes(
        pipe: Any, post: StoredPost, now_ms: int, plan: str, followers: int, alerts: bool
    ) -> None:
        pipe.set(post_key(post.post_id), _body(post))
        pipe.zadd(user_posts_key(post.author_id), {pad(post.post_id): 0})
        progress = progress_key(post.post_id)
        record: Any = {"created_ms": now_ms, "state": "fanout"}
        job: Any = {
            "kind": "split",
            "post": post.post_id,
            "author": post.author_id,
            "from": "",
            "to": "",
            **tracing.carrier(),
        }
        if plan == "pulled":
            record.update(state="pulled", finished_ms=now_ms)
            pipe.publish(author_channel(post.author_id), entry(post.post_id, post.author_id))
        elif plan == "whole" and followers == 0:
            record.update(total=0, chunks=0, finished_ms=now_ms)
        elif plan == "whole":
            record.update(total=followers, chunks=1)
            job["kind"] = "chunk"
        pipe.hset(progress, mapping=record)
        pipe.expire(progress, PROGRESS_TTL_S)
        if "finished_ms" not in record:
            pipe.xadd(JOBS_KEY, job)
        if alerts:
            pipe.xadd(JOBS_KEY, {**job, "kind": "alerts"})

    async def author_state(self, author: int) -> tuple[bool, int, int]:
        """(is a celebrity, follower count, followers with post alerts on) in one round
        trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember(CELEBRITIES_KEY, str(author))
        pipe.zcard(followers_key(author))
        pipe.scard(alerts_key(author))
        celebrity, count, alerted = await pipe.execute()
        return bool(celebrity), int(count), int(alerted)

    async def get_posts(self, post_ids: Sequence[int]) -> list[StoredPost | None]:
        """The posts in order (None where deleted or unknown): one MGET of the cache, and
        for the bodies it lacks one query of the record (they are cached again)."""
        if not post_ids:
            return []
        raws = await self.redis.mget([post_key(p) for p in post_ids])
        cached: dict[int, StoredPost] = {}
        for post_id, raw in zip(post_ids, raws, strict=True):
            if raw is not None:
                data = json.loads(raw)
                cached[post_id] = StoredPost(post_id, int(data["a"]), str(data["t"]))
        missing = [p for p in post_ids if p not in cached]
        if missing:
            recorded = await self.records.posts(missing)
            if recorded:
                await self.redis.mset({post_key(p.post_id): _body(p) for p in recorded.values()})
            cached.update(recorded)
        return [cached.get(p) for p in post_ids]

    async def delete_post(self, post_id: int, author: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(post_key(post_id))
        pipe.zrem(user_posts_key(author), pad(post_id))
        await pipe.execute()

    async def ranges(
        self, requests: Sequence[tuple[str, int | None, int | None, int]]
    ) -> list[list[str]]:
        """Newest-first members of several lex zsets in one pipeline.

        Each request is ``(key, upper exclusive id, lower inclusive id, limit)``.
        """
        if not requests:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key, upper, lower, limit in requests:
            hi, lo = _range_args(upper, lower)
            pipe.zrevrangebylex(key, hi, lo, start=0, num=limit)
        results = await pipe.execute()
        return [[m.decode() for m in members] for members in results]

    async def merge_newest(
        self,
        sources: Sequence[tuple[str, int | None]],
        upper: int | None,
        lower: int | None,
        n: int,
    ) -> list[str]:
        """Newest ``n`` distinct entries over a few ``(key, author or None)`` lists, merged
        in one script call; members come back as ``'<padded id>:<author>'``."""
        hi, lo = _range_args(upper, lower)
        args: list[Any] = [hi, lo, n, *("" if a is None else a for _, a in sources)]
        found = await self._merge_newest(keys=[k for k, _ in sources], args=args)
        return [m.decode() for m in found]

    # --- follow graph ----------------------------------------------------------------
    async def follow(self, follower: int, author: int) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(following_key(follower), {pad(author): 0})
        pipe.zadd(followers_key(author), {pad(follower): 0})
        added, _ = await pipe.execute()
        return bool(added)

    async def unfollow(self, follower: int, author: int) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(following_key(follower), pad(author))
        pipe.zrem(followers_key(author), pad(follower))
        self.alert_writes(pipe, follower, author, False)
        removed, *_ = await pipe.execute()
        return bool(removed)

    async def following_count(self, user: int) -> int:
        return int(await self.redis.zcard(following_key(user)))

    async def follower_count(self, user: int) -> int:
        return int(await self.redis.zcard(followers_key(user)))

    async def is_following(self, follower: int, author: int) -> bool:
        return await self.redis.zscore(following_key(follower), pad(author)) is not None

    async def following_all(self, user: int) -> list[int]:
        members: Any = await self.redis.zrange(following_key(user), 0, -1)
        return [int(m) for m in members]

    async def graph_page(
        self, user: int, followers: bool, after: int | None, limit: int
    ) -> tuple[list[int], int]:
        """Ids after ``after`` (ascending, ``limit`` of them) and the total count."""
        key = followers_key(user) if followers else following_key(user)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebylex(
            key, f"({pad(after)}" if after is not None else "-", "+", start=0, num=limit
        )
        pipe.zcard(key)
        members, total = await pipe.execute()
        return [int(m) for m in members], int(total)

    async def follower_batch(self, author: int, start: str, end: str, limit: int) -> list[int]:
        """Followers with ``start < id <= end`` (padded bounds; '' = open), ascending."""
        lo = f"({start}" if start else "-"
        hi = f"[{end}" if end else "+"
        members = await self.redis.zrangebylex(followers_key(author), lo, hi, start=0, num=limit)
        return [int(m) for m in members]

    async def follower_boundaries(self, author: int, every: int) -> tuple[int, list[str]]:
        """The follower count and the padded id at ranks every-1, 2*every-1, ... (chunk ends)."""
        total = await self.follower_count(author)
        ranks = list(range(every - 1, total - 1, every))
        if not ranks:
            return total, []
        pipe = self.redis.pipeline(transaction=False)
        for rank in ranks:
            pipe.zrange(followers_key(author), rank, rank)
        found = await pipe.execute()
        return total, [m[0].decode() for m in found if m]

    async def cache_following(self, rows: Sequence[tuple[int, int, bool]]) -> None:
        """Add recorded (follower, author, alerts on) rows to the followers' cached
        following lists (and the alert sets): one ZADD per follower in the batch."""
        pipe = self.redis.pipeline(transaction=False)
        by_follower: dict[int, dict[str, int]] = {}
        for follower, author, alerts in rows:
            by_follower.setdefault(follower, {})[pad(author)] = 0
            if alerts:
                self.alert_writes(pipe, follower, author, True)
        for follower, authors in by_follower.items():
            pipe.zadd(following_key(follower), authors)
        await pipe.execute()

    async def cache_followers(self, rows: Sequence[tuple[int, int]]) -> None:
        """Add recorded (author, follower) rows to the authors' cached follower lists:
        one ZADD per author in the batch."""
        await self._cache_lists(followers_key, rows)

    async def cache_post_ids(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Add recorded (post id, author) pairs to the authors' cached post id lists."""
        await self._cache_lists(user_posts_key, [(author, post) for post, author in pairs])

    async def _cache_lists(
        self, key: Callable[[int], str], rows: Sequence[tuple[int, int]]
    ) -> None:
        """ZADD (score 0) each (owner, member) row's member to ``key(owner)``, one command
        per owner."""
        grouped: dict[int, dict[str, int]] = {}
        for owner, member in rows:
            grouped.setdefault(owner, {})[pad(member)] = 0
        pipe = self.redis.pipeline(transaction=False)
        for owner, members in grouped.items():
            pipe.zadd(key(owner), members)
        await pipe.execute()

    # --- cache refill ---------------------------------------------------------------------
    async def is_warm(self) -> bool:
        return bool(await self.redis.exists(WARM_KEY))

    async def set_warm(self) -> None:
        await self.redis.set(WARM_KEY, 1)

    async def lock_warming(self, owner: str, ttl_s: int) -> bool:
        """Take the refill lock for ``ttl_s`` seconds; False when another holds it."""
        return bool(await self.redis.set(WARMING_KEY, owner, nx=True, ex=ttl_s))

    async def unlock_warming(self) -> None:
        await self.redis.delete(WARMING_KEY)

    # --- celebrities ------------------------------------------------------------------
    async def promote(self, author: int) -> bool:
        """Mark an author a celebrity; True when they were not one before."""
        return bool(await self.redis.sadd(CELEBRITIES_KEY, str(author)))

    async def promote_all(self, authors: Sequence[int]) -> None:
        if authors:
            await self.redis.sadd(CELEBRITIES_KEY, *(str(a) for a in authors))

    async def celebrities(self) -> set[int]:
        return {int(m) for m in await self.redis.smembers(CELEBRITIES_KEY)}

    async def is_celebrity(self, author: int) -> bool:
        return bool(await self.redis.sismember(CELEBRITIES_KEY, str(author)))

    # --- feed caches --------------------------------------------------------------------
    async def touch_seen(self, user: int, now_ms: int) -> int | None:
        """Record activity; the previous last-active time (ms), if any."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(ACTIVE_KEY, str(user))
        pipe.hset(ACTIVE_KEY, str(user), now_ms)
        old, _ = await pipe.execute()
        return int(old) if old is not None else None

    async def last_seen(self, user: int) -> int | None:
        found = await self.redis.hget(ACTIVE_KEY, str(user))
        return int(found) if found is not None else None

    async def mark_streaming(self, user: int, until_ms: int) -> None:
        """The user has a stream open until at least ``until_ms`` (never shortened)."""
        await self.redis.zadd(STREAMING_KEY, {str(user): until_ms}, gt=True)

    async def sweep_streaming(self, now_ms: int) -> int:
        return int(await self.redis.zremrangebyscore(STREAMING_KEY, "-inf", now_ms))

    async def read_context(
        self, user: int, touch_ms: int | None = None
    ) -> tuple[list[bytes], set[int], FeedMeta, int | None]:
        """In one round trip: whom ``user`` follows (padded ids, as stored), the
        celebrities, the cache's state, and (when ``touch_ms`` records activity) the
        previous last-active time."""
        pipe = self.redis.pipeline(transaction=False)
        if touch_ms is not None:
            pipe.hget(ACTIVE_KEY, str(user))
            pipe.hset(ACTIVE_KEY, str(user), touch_ms)
        pipe.zrange(following_key(user), 0, -1)
        pipe.smembers(CELEBRITIES_KEY)
        pipe.zcard(feed_key(user))
        pipe.get(floor_key(user))
        pipe.zrangebylex(feed_key(user), "-", "+", start=0, num=1)
        pipe.exists(stale_key(user))
        pipe.exists(WARM_KEY)
        replies = await pipe.execute()
        previous = None
        if touch_ms is not None:
            seen = replies.pop(0)
            replies.pop(0)
            previous = int(seen) if seen is not None else None
        following, celebs, size, floor, oldest, stale, warm = replies
        oldest_id = parse_entry(oldest[0].decode())[0] if oldest else None
        meta = FeedMeta(int(size), int(floor or 0), oldest_id, bool(stale), bool(warm))
        return list(following), {int(m) for m in celebs}, meta, previous

    async def set_stale(self, user: int, stale: bool) -> None:
        if stale:
            await self.redis.set(stale_key(user), 1)
        else:
            await self.redis.delete(stale_key(user))

    async def merge_entries(
        self, user: int, members: Iterable[str], cap: int, floor: int | None = None
    ) -> int:
        """Add entries to a feed cache, trim it to ``cap``; maybe set its floor."""
        args: list[Any] = [cap, pad(floor) if floor is not None else "", *members]
        size = await self._merge(keys=[feed_key(user), floor_key(user)], args=args)
        return int(size)

    async def remove_entries(
        self, user: int, cap: int, author: int | None = None, members: Sequence[str] = ()
    ) -> int:
        """Remove every entry of ``author`` and/or the given members from a feed cache,
        keeping the range it is complete for (see ``scripts.REMOVE_ENTRIES``)."""
        suffix = f":{author}" if author is not None else ""
        removed = await self._remove_entries(
            keys=[feed_key(user), floor_key(user)], args=[cap, suffix, *members]
        )
        return int(removed)

    async def fanout_insert(
        self, followers: Sequence[int], member: str, cap: int, cutoff_ms: int, now_ms: int
    ) -> tuple[int, int]:
        """Insert an entry into each active follower's cache in one script call."""
        keys = [ACTIVE_KEY, STREAMING_KEY, *(feed_key(user) for user in followers)]
        written, skipped = await self._fanout_insert(
            keys=keys, args=[member, cap, cutoff_ms, now_ms, *followers]
        )
        return int(written), int(skipped)

    async def get_ack(self, user: int) -> int:
        return int(await self.redis.get(ack_key(user)) or 0)

    async def set_ack(self, user: int, post_id: int) -> None:
        await self.redis.set(ack_key(user), post_id)

    async def publish(self, channel: str, message: str) -> None:
        await self.redis.publish(channel, message)


__all__ = [
    "CONTROL_CHANNEL",
    "GROUP",
    "JOBS_KEY",
    "LANDED_KEY",
    "PROGRESS_TTL_S",
    "FanoutQueueStore",
    "FeedMeta",
    "FeedStore",
    "Job",
    "StoredPost",
    "progress_key",
]

"""Feed caches in Redis and what reads and fanout need around them: each user's cached
feed (entries, floor, stale mark, stream ack), who was active or streaming lately, the
reads that merge id lists, and the notes on users' live channels.

On a Redis Cluster each user's keys sit in the user's slot, so every script here takes
one user's keys; what spans users goes per slot and is merged here:

- fanout (:meth:`TimelineCache.fanout_insert`) reads activity and open streams for a batch
  in one round trip, then inserts with one script call per slot (one call for the whole
  batch on one node), pipelined: one round trip per node;
- merges over several id lists (:meth:`TimelineCache.merge_newest`, a reader's feed cache
  plus the celebrities they follow) run the merge script per slot and merge its answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from feed_svc import keys
from feedchat_runtime.ids import PADDED_WIDTH
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient, slot_groups


@dataclass(frozen=True)
class IdList:
    """A newest-first id list in Redis: a user's feed cache (members carry their author)
    or an author's own posts (ids only)."""

    user: int
    own_posts: bool

    @classmethod
    def feed(cls, user: int) -> IdList:
        return cls(user, False)

    @classmethod
    def posts(cls, author: int) -> IdList:
        return cls(author, True)

    @property
    def key(self) -> str:
        return keys.user_posts_key(self.user) if self.own_posts else keys.feed_key(self.user)

    @property
    def author(self) -> int | None:
        """The author of every member, when the members do not carry it."""
        return self.user if self.own_posts else None


@dataclass(frozen=True)
class FeedMeta:
    """What a reader needs to know about a feed cache before using it."""

    size: int
    floor: int
    oldest: int | None
    stale: bool
    warm: bool = True  # False: Redis lost the graph caches (see feed_svc.warmup)


def _range_args(upper: int | None, lower: int | None) -> tuple[str, str]:
    hi = f"({keys.pad(upper)}" if upper is not None else "+"
    lo = f"[{keys.pad(lower)}" if lower is not None else "-"
    return hi, lo


def newest_distinct(lists: Sequence[Sequence[str]], n: int) -> list[str]:
    """The newest ``n`` members with distinct post ids across newest-first lists of
    ``'<padded id>:<author>'`` members."""
    if len(lists) == 1:
        return list(lists[0][:n])
    out: list[str] = []
    last = ""
    for member in sorted(chain.from_iterable(lists), reverse=True):
        post = member[:PADDED_WIDTH]
        if post != last:
            out.append(member)
            last = post
            if len(out) >= n:
                break
    return out


class TimelineCache:
    def __init__(self, redis: RedisClient, scripts: LuaScripts) -> None:
        self.redis = redis
        self.scripts = scripts

    # --- activity -----------------------------------------------------------------------
    async def touch_seen(self, user: int, now_ms: int) -> int | None:
        """Record activity; the previous last-active time (ms), if any."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys.ACTIVE_KEY, str(user))
        pipe.hset(keys.ACTIVE_KEY, str(user), now_ms)
        old, _ = await pipe.execute()
        return int(old) if old is not None else None

    async def last_seen(self, user: int) -> int | None:
        found = await self.redis.hget(keys.ACTIVE_KEY, str(user))
        return int(found) if found is not None else None

    async def mark_streaming(self, user: int, until_ms: int) -> None:
        """The user has a stream open until at least ``until_ms`` (never shortened)."""
        await self.redis.zadd(keys.STREAMING_KEY, {str(user): until_ms}, gt=True)

    async def sweep_streaming(self, now_ms: int) -> int:
        return int(await self.redis.zremrangebyscore(keys.STREAMING_KEY, "-inf", now_ms))

    # --- a reader's context ------------------------------------------------------------------
    async def read_context(
        self, user: int, touch_ms: int | None = None
    ) -> tuple[list[bytes], set[int], FeedMeta, int | None]:
        """In one round trip (per node): whom ``user`` follows (padded ids, as stored),
        the celebrities, the cache's state (with whether the caches of the record are
        filled), and (when ``touch_ms`` records activity) the
        previous last-active time."""
        pipe = self.redis.pipeline(transaction=False)
        if touch_ms is not None:
            pipe.hget(keys.ACTIVE_KEY, str(user))
            pipe.hset(keys.ACTIVE_KEY, str(user), touch_ms)
        pipe.zrange(keys.following_key(user), 0, -1)
        pipe.smembers(keys.CELEBRITIES_KEY)
        pipe.zcard(keys.feed_key(user))
        pipe.get(keys.floor_key(user))
        pipe.zrangebylex(keys.feed_key(user), "-", "+", start=0, num=1)
        pipe.exists(keys.stale_key(user))
        pipe.exists(keys.WARM_KEY)
        replies = await pipe.execute()
        previous = None
        if touch_ms is not None:
            seen = replies.pop(0)
            replies.pop(0)
            previous = int(seen) if seen is not None else None
        following, celebs, size, floor, oldest, stale, warm = replies
        oldest_id = keys.parse_entry(oldest[0].decode())[0] if oldest else None
        meta = FeedMeta(int(size), int(floor or 0), oldest_id, bool(stale), bool(warm))
        return list(following), {int(m) for m in celebs}, meta, previous

    # --- reads over id lists --------------------------------------------------------------
    async def ranges(
        self, requests: Sequence[tuple[IdList, int | None, int | None, int]]
    ) -> list[list[str]]:
        """Newest-first members of several id lists in one pipeline (per node).

        Each request is ``(list, upper exclusive id, lower inclusive id, limit)``.
        """
        if not requests:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for source, upper, lower, limit in requests:
            hi, lo = _range_args(upper, lower)
            pipe.zrevrangebylex(source.key, hi, lo, start=0, num=limit)
        results = await pipe.execute()
        return [[m.decode() for m in members] for members in results]

    async def merge_newest(
        self, sources: Sequence[IdList], upper: int | None, lower: int | None, n: int
    ) -> list[str]:
        """Newest ``n`` distinct entries over a few id lists: the merge script once per
        slot (once in all on one node), its answers merged here; members come back as
        ``'<padded id>:<author>'``."""
        hi, lo = _range_args(upper, lower)
        groups = slot_groups(self.redis, [s.key for s in sources])

        def build(pipe: Any) -> None:
            for group in groups:
                lists = [sources[i] for i in group]
                authors = ["" if s.author is None else s.author for s in lists]
                args: list[Any] = [hi, lo, n, *authors]
                self.scripts.queue(pipe, "merge_newest", [s.key for s in lists], args)

        replies = await self.scripts.execute(build)
        return newest_distinct([[m.decode() for m in found] for found in replies], n)

    # --- cache edits ----------------------------------------------------------------------
    async def set_stale(self, user: int, stale: bool) -> None:
        if stale:
            await self.redis.set(keys.stale_key(user), 1)
        else:
            await self.redis.delete(keys.stale_key(user))

    async def merge_entries(
        self, user: int, members: Iterable[str], cap: int, floor: int | None = None
    ) -> int:
        """Add entries to a feed cache, trim it to ``cap``; maybe set its floor."""
        args: list[Any] = [cap, keys.pad(floor) if floor is not None else "", *members]
        size = await self.scripts.call(
            "merge_entries", [keys.feed_key(user), keys.floor_key(user)], args
        )
        return int(size)

    async def remove_entries(
        self, user: int, cap: int, author: int | None = None, members: Sequence[str] = ()
    ) -> int:
        """Remove every entry of ``author`` and/or the given members from a feed cache,
        keeping the range it is complete for (see ``scripts.REMOVE_ENTRIES``)."""
        suffix = f":{author}" if author is not None else ""
        removed = await self.scripts.call(
            "remove_entries", [keys.feed_key(user), keys.floor_key(user)], [cap, suffix, *members]
        )
        return int(removed)

    async def fanout_insert(
        self, followers: Sequence[int], member: str, cap: int, cutoff_ms: int, now_ms: int
    ) -> tuple[int, int]:
        """Insert an entry into the cache of each follower active since ``cutoff_ms``
        (publishing it to those with a stream open): their activity in one round trip,
        then the inserts, one script call per slot, pipelined. (written, skipped)."""
        if not followers:
            return 0, 0
        users = [str(u) for u in followers]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys.ACTIVE_KEY, users)
        pipe.zmscore(keys.STREAMING_KEY, users)
        seen, live = await pipe.execute()
        feeds: list[str] = []
        channels: list[str] = []
        for user, last, until in zip(followers, seen, live, strict=True):
            if last is not None and int(last) >= cutoff_ms:
                feeds.append(keys.feed_key(user))
                streaming = until is not None and until >= now_ms
                channels.append(keys.live_channel(user) if streaming else "")
        if feeds:
            groups = slot_groups(self.redis, feeds)

            def build(pipe: Any) -> None:
                for group in groups:
                    args = [member, cap, *(channels[i] for i in group)]
                    self.scripts.queue(pipe, "fanout_insert", [feeds[i] for i in group], args)

            await self.scripts.execute(build)
        return len(feeds), len(followers) - len(feeds)

    # --- streams ------------------------------------------------------------------------
    async def get_ack(self, user: int) -> int:
        return int(await self.redis.get(keys.ack_key(user)) or 0)

    async def set_ack(self, user: int, post_id: int) -> None:
        await self.redis.set(keys.ack_key(user), post_id)

    async def announce_following_changed(self, user: int) -> None:
        """Tell the user's open streams (on any server) to re-read whom they follow."""
        await self.redis.publish(keys.live_channel(user), keys.FOLLOWING_CHANGED)

    async def announce_promoted(self, author: int) -> None:
        """Tell every server that ``author`` became a celebrity (streams resync)."""
        await self.redis.publish(keys.CONTROL_CHANNEL, keys.promoted_note(author))

"""Reading a home feed: the feed cache merged with pulled posts, exactly, in id order.

A user's feed cache holds entries fanned out on write (ordinary authors) and is complete
for post ids at or above its *floor*: the stored floor, raised to the oldest cached entry
once the cache is full (trimming drops the oldest). Reads merge, newest first:

- above the floor: the cache plus the post lists of the celebrities the user follows
  (celebrity posts are never fanned out);
- below the floor (or for a stale cache: a returning inactive user, a new one): the post
  lists of every followed account, pulled and merged at read time.

So the timeline never cuts out at the cache's cap, and a stale cache still gives a complete
page while :meth:`Timeline.rebuild` refills it in the background. Removing entries
(:meth:`Timeline.remove`) first pins the floor at the full cache's oldest entry, so a cache
shrunk below the cap is never taken as complete further down than it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from feed_svc.keys import entry, pad, parse_entry
from feed_svc.store import FeedStore
from feed_svc.store_timelines import FeedMeta, IdList

logger = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class FeedEntry:
    """One feed item before hydration (ordered by post id)."""

    post_id: int
    author_id: int


SCRIPT_MERGE_MAX = 64
"""Up to this many lists are merged by one server-side script (n ids read from each);
more (a pull over every followed account) use rounds of pipelined reads instead."""


@dataclass
class Source:
    """One id list being merged: a feed cache, or one author's own posts."""

    ids: IdList
    primary: bool = False  # expected to hold most of the answer: first fetch is the full n
    cursor: int | None = None  # exclusive upper bound of the next fetch
    exhausted: bool = False
    limit: int = 0  # ids to fetch next round

    def parse(self, member: str) -> FeedEntry:
        author = self.ids.author
        if author is None:
            return FeedEntry(*parse_entry(member))
        return FeedEntry(int(member), author)


async def merge_newest(
    store: FeedStore,
    sources: Sequence[Source],
    upper: int | None,
    lower: int | None,
    n: int,
    script_max: int = SCRIPT_MERGE_MAX,
) -> list[FeedEntry]:
    """The newest ``n`` distinct entries with ``lower <= id < upper`` across ``sources``.

    Exact, yet reading little: each round fetches a few ids per source, then fetches more
    only from sources that could still hold one of the ``n`` newest (their oldest fetched
    id is above the n-th best so far).
    """
    if n <= 0 or not sources:
        return []
    if len(sources) <= script_max:
        merged = await store.timelines.merge_newest([s.ids for s in sources], upper, lower, n)
        return [FeedEntry(*parse_entry(m)) for m in merged]
    share = max(1, min(n, -(-2 * n // len(sources))))
    for source in sources:
        source.cursor, source.exhausted = upper, False
        source.limit = n if source.primary else share
    pool: dict[int, FeedEntry] = {}
    todo = list(sources)
    while True:
        found = await store.timelines.ranges([(s.ids, s.cursor, lower, s.limit) for s in todo])
        for source, members in zip(todo, found, strict=True):
            for member in members:
                item = source.parse(member)
                pool.setdefault(item.post_id, item)
            if len(members) < source.limit:
                source.exhausted = True
            else:
                source.cursor = source.parse(members[-1]).post_id
                source.limit = min(source.limit * 2, n)
        ordered = sorted(pool.values(), reverse=True)
        open_cursors = [s.cursor for s in sources if not s.exhausted and s.cursor is not None]
        if not open_cursors:
            return ordered[:n]
        bound = max(open_cursors)
        if sum(1 for e in ordered[:n] if e.post_id >= bound) >= n:
            return ordered[:n]
        threshold = ordered[n - 1].post_id if len(ordered) >= n else -1
        todo = [s for s in sources if not s.exhausted and (s.cursor or 0) > threshold]


class FollowSet:
    """The accounts a reader follows, kept as read from Redis (padded ids), so a read
    tests membership without converting thousands of ids it never looks at."""

    def __init__(self, members: Iterable[bytes]) -> None:
        self._raw = frozenset(members)
        self._ids: list[int] | None = None

    def __contains__(self, user: object) -> bool:
        return isinstance(user, int) and pad(user).encode() in self._raw

    def __len__(self) -> int:
        return len(self._raw)

    def ids(self) -> list[int]:
        """Every followed id, ascending."""
        if self._ids is None:
            self._ids = sorted(int(m) for m in self._raw)
        return self._ids


@dataclass
class ReadContext:
    """What one read knows about the reader: follows, celebrities followed, cache state."""

    user: int
    following: FollowSet
    celebrities: list[int]
    meta: FeedMeta
    cap: int
    use_cache: bool = field(init=False)
    floor: int = field(init=False)
    previous_seen: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.use_cache = not self.meta.stale
        floor = self.meta.floor
        if self.meta.size >= self.cap and self.meta.oldest is not None:
            floor = max(floor, self.meta.oldest)
        self.floor = floor


class Timeline:
    """Cache-plus-pull reads, cache rebuilds, and the follow/unfollow cache edits."""

    def __init__(self, store: FeedStore, cap: int) -> None:
        self.store = store
        self.cap = cap
        self._rebuilds: dict[int, asyncio.Task[None]] = {}

    async def context(self, user: int, touch_ms: int | None = None) -> ReadContext:
        """The reader's context; with ``touch_ms`` it also records the read as activity."""
        following, celebrities, meta, previous = await self.store.timelines.read_context(
            user, touch_ms
        )
        followed = FollowSet(following)
        followed_celebs = sorted(a for a in celebrities if a in followed)
        ctx = ReadContext(user, followed, followed_celebs, meta, self.cap)
        ctx.previous_seen = previous
        return ctx

    def _pull_sources(self, ctx: ReadContext) -> list[Source]:
        return [Source(IdList.posts(a)) for a in ctx.following.ids()]

    async def entries(
        self, ctx: ReadContext, upper: int | None, lower: int | None, k: int
    ) -> list[FeedEntry]:
        """The newest ``k`` entries with ``lower <= id < upper`` of the user's feed."""
        if not ctx.use_cache:
            return await merge_newest(self.store, self._pull_sources(ctx), upper, lower, k)
        got: list[FeedEntry] = []
        if upper is None or upper > ctx.floor:
            cached = [Source(IdList.feed(ctx.user), primary=True)]
            cached += [Source(IdList.posts(a)) for a in ctx.celebrities]
            top_lower = max(ctx.floor, lower or 0)
            got = await merge_newest(self.store, cached, upper, top_lower, k)
        if len(got) < k and ctx.floor > 0 and (lower is None or lower < ctx.floor):
            below = upper if upper is not None and upper <= ctx.floor else ctx.floor
            got += await merge_newest(
                self.store, self._pull_sources(ctx), below, lower, k - len(got)
            )
        return got

    async def rebuild(self, user: int) -> None:
        """Refill a stale cache with the newest entries of ordinary followed authors."""
        for _ in range(3):
            ctx = await self.context(user)
            ctx.use_cache = False
            celebrities = set(ctx.celebrities)
            regular = [a for a in ctx.following.ids() if a not in celebrities]
            sources = [Source(IdList.posts(a)) for a in regular]
            newest = await merge_newest(self.store, sources, None, None, self.cap)
            floor = newest[-1].post_id if len(newest) >= self.cap else 0
            await self.store.timelines.merge_entries(
                user, [entry(e.post_id, e.author_id) for e in newest], self.cap, floor
            )
            # A follow during the rebuild merged its author itself; an unfollow is
            # filtered at read time. Only a changed follow set needs another pass.
            if await self.store.graph.following_all(user) == ctx.following.ids():
                await self.store.timelines.set_stale(user, False)
                return
        await self.store.timelines.set_stale(user, False)

    def rebuild_soon(self, user: int) -> None:
        """Start a background rebuild unless one for this user is running here."""
        running = self._rebuilds.get(user)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._rebuild_logged(user), name=f"feed-rebuild-{user}")
        self._rebuilds[user] = task

    async def _rebuild_logged(self, user: int) -> None:
        try:
            await self.rebuild(user)
        except Exception:
            logger.exception("feed rebuild failed for user %s", user)
        finally:
            self._rebuilds.pop(user, None)

    async def wait_rebuilds(self) -> None:
        """Wait for background rebuilds started here (tests, shutdown)."""
        while self._rebuilds:
            await asyncio.gather(*list(self._rebuilds.values()), return_exceptions=True)

    async def merge_author(self, user: int, author: int) -> None:
        """After a follow: the author's newest posts (up to the cap) into the cache."""
        if await self.store.graph.is_celebrity(author):
            return  # merged at read time
        source = Source(IdList.posts(author), primary=True)
        posts = await merge_newest(self.store, [source], None, None, self.cap)
        if posts:
            await self.store.timelines.merge_entries(
                user, [entry(e.post_id, e.author_id) for e in posts], self.cap
            )

    async def remove(
        self, user: int, author: int | None = None, entries: Sequence[FeedEntry] = ()
    ) -> int:
        """Take entries out of a user's cache: every entry of ``author`` (unfollow; a block
        or a deleted account would do the same) and/or ``entries``. Every removal goes
        through here: it keeps the range the cache is complete for, so reads go on pulling
        older posts below it instead of taking the shrunk cache as the whole feed."""
        members = [entry(e.post_id, e.author_id) for e in entries]
        return await self.store.timelines.remove_entries(user, self.cap, author, members)

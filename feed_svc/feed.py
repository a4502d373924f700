"""The feed's rules: posting, the follow graph, paged reads, fanout progress.

Follows and posts are written to the record (PostgreSQL, :mod:`feed_svc.records`) first;
a write that fails there is not acknowledged and leaves Redis untouched. Redis is written
next, as a cache; every request that relies on those caches first makes sure they are
filled (:class:`feed_svc.warmup.CacheWarmer`).

No transport here: the servicer converts protobuf to these calls and the dataclasses back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from feed_svc.authors import Author, AuthorDirectory
from feed_svc.config import MAX_POST_CHARS, FeedConfig
from feed_svc.post_requests import PostRequest, check_request_id
from feed_svc.records import StoredPost, account_deleted
from feed_svc.removal import UserRemoval
from feed_svc.store import FeedStore
from feed_svc.store_queue import PostFanout
from feed_svc.store_timelines import IdList
from feed_svc.timeline import FeedEntry, ReadContext, Source, Timeline, merge_newest
from feed_svc.warmup import CacheWarmer
from feedchat_runtime.clock import wall_ms
from feedchat_runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from feedchat_runtime.pages import PageTokens, page_size
from feedchat_runtime.snowflake import SnowflakeGenerator, timestamp_ms
from feedchat_runtime.text import TextRule

logger = logging.getLogger(__name__)

MAX_HYDRATE_ROUNDS = 10
# Page token listings (feedchat_runtime.pages) and page sizes (default, maximum).
FEED, USER_POSTS = "feed.GetFeed", "feed.ListUserPosts"
FOLLOWERS, FOLLOWING = "feed.ListFollowers", "feed.ListFollowing"
POSTS_PAGE, MAX_POSTS_PAGE = 20, 100
GRAPH_PAGE, MAX_GRAPH_PAGE = 100, 1000
"""Rounds a page read may spend skipping deleted/unfollowed entries before it pages on."""


@dataclass(frozen=True)
class PostView:
    """A post ready to show: its author looked up."""

    post_id: int
    author: Author
    text: str
    created_ms: int


@dataclass(frozen=True)
class Page:
    posts: list[PostView]
    next_token: str


@dataclass(frozen=True)
class IdPage:
    user_ids: list[int]
    next_token: str
    total: int


@dataclass(frozen=True)
class FanoutStatus:
    state: str  # RUNNING, DONE, PULLED_AT_READ, UNKNOWN
    total: int = 0
    done: int = 0
    pending: int = 0
    skipped: int = 0
    lag_ms: int = 0
    queue_pending: int = 0
    queue_waiting: int = 0
    queue_oldest_ms: int = 0


POST_TEXT = TextRule("text", MAX_POST_CHARS, "POST", multiline=True)


def check_user_id(user_id: int, name: str = "user_id") -> int:
    if user_id <= 0:
        raise InvalidArgument.field(name, "a user id is required")
    return user_id


class Feed:
    """Posts, follows and feed reads for authenticated users."""

    def __init__(
        self,
        config: FeedConfig,
        store: FeedStore,
        authors: AuthorDirectory,
        ids: SnowflakeGenerator,
        tokens: PageTokens,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.config = config
        self.store = store
        self.authors = authors
        self.ids = ids
        self.tokens = tokens
        self.clock = clock
        self.records = store.records
        self.timeline = Timeline(store, config.feed_cache_size)
        self.removal = UserRemoval(store, self.timeline, clock)
        self.warmer = CacheWarmer(store, store.records, config.celebrity_threshold, config.instance)

    # --- posts ------------------------------------------------------------------------
    async def create_post(self, user: int, text: str, request_id: str = "") -> PostView:
        POST_TEXT.check(text)
        now = self.clock()
        request = None
        if check_request_id(request_id):
            request = PostRequest.of(user, request_id, text)
            original = request.original(await self.records.recorded(request, now))
            if original is not None:  # a retry: the post the first call stored
                return await self._retried(original, user, text, now)
        await self.warmer.ensure()
        wait_ms = await self.store.posts.take_token(
            user, self.config.post_rate, self.config.post_burst, now
        )
        if wait_ms:
            raise ResourceExhausted(
                f"posting too fast; retry in {wait_ms / 1000:.3f}s",
                reason="RATE_LIMITED",
                retry_after=wait_ms / 1000,
            )
        celebrity, followers, alerted = await self.store.graph.author_state(user)
        promoted = False
        if not celebrity and followers > self.config.celebrity_threshold:
            # Promotion is one-way: pulling at read time stays correct if the count drops.
            promoted = await self.store.graph.promote(user)
            celebrity = True
        post = StoredPost(self.ids.next_id(), user, text)
        earlier = await self.records.create_post(post, now, request)
        if request is not None and earlier is not None:  # a concurrent call stored it first
            return await self._created_view(request.post_of(earlier), user, text)
        if await self.store.removals.is_removed(user):
            # Checked after recording: the account's removal either swept this post or is
            # seen here (see feed_svc.removal), so no post outlives a deleted account.
            await self.records.delete_post(post.post_id)
            raise account_deleted(user)
        await self._store_post(post, now, celebrity, followers, alerted)
        if promoted:  # after the post is stored, so open streams that resync find it
            await self.store.timelines.announce_promoted(user)
        return await self._created_view(post.post_id, user, text)

    async def _store_post(
        self, post: StoredPost, now: int, celebrity: bool, followers: int, alerted: int
    ) -> None:
        """The Redis part of a recorded post: its caches and its fanout, queued once."""
        if celebrity:
            plan = "pulled"
        else:
            plan = "whole" if followers <= self.config.fanout_chunk else "split"
        window_ms = int(self.config.stream_resume_window * 1000)
        fanout = PostFanout(plan, followers, alerted > 0, now, now - window_ms)
        await self.store.store_post(post, fanout)

    async def _retried(self, post_id: int, user: int, text: str, now: int) -> PostView:
        """A retried CreatePost: the Redis part is run again (it is idempotent: a post
        whose fanout was queued is not queued twice) so that a first call cut short after
        the record -- a crash, a failover, no replica confirming in time -- is finished, and
        confirmed by replicas when ``--replica-acks`` asks for it. A post deleted since
        stays deleted."""
        recorded = (await self.records.posts([post_id])).get(post_id)
        if recorded is not None:
            await self.warmer.ensure()
            celebrity, followers, alerted = await self.store.graph.author_state(user)
            await self._store_post(recorded, now, celebrity, followers, alerted)
        return await self._created_view(post_id, user, text)

    async def _created_view(self, post_id: int, user: int, text: str) -> PostView:
        try:
            author = (await self.authors.get_authors([user])).get(user, Author(user))
        except Unavailable:
            author = Author(user)
        return PostView(post_id, author, text, timestamp_ms(post_id))

    async def delete_post(self, user: int, post_id: int) -> None:
        check_user_id(post_id, "post_id")
        (found,) = await self.store.posts.get_posts([post_id])
        if found is None:
            raise NotFound(f"post {post_id} does not exist", reason="POST_NOT_FOUND")
        if found.author_id != user:
            raise PermissionDenied("only its author may delete a post", reason="NOT_POST_AUTHOR")
        await self.records.delete_post(post_id)
        await self.warmer.ensure()
        await self.store.posts.delete_post(post_id, user)

    async def get_post(self, post_id: int) -> PostView:
        check_user_id(post_id, "post_id")
        views = await self.hydrate([FeedEntry(post_id, 0)])
        if not views:
            raise NotFound(f"post {post_id} does not exist", reason="POST_NOT_FOUND")
        return views[0]

    async def hydrate(self, entries: Sequence[FeedEntry]) -> list[PostView]:
        """Posts for entries in order, deleted ones dropped, authors looked up in batch."""
        stored = await self.store.posts.get_posts([e.post_id for e in entries])
        posts = [p for p in stored if p is not None]
        try:
            authors = await self.authors.get_authors({p.author_id for p in posts})
        except Unavailable:
            logger.warning("author lookup failed; serving posts without author names")
            authors = {}
        return [
            PostView(
                p.post_id,
                authors.get(p.author_id, Author(p.author_id)),
                p.text,
                timestamp_ms(p.post_id),
            )
            for p in posts
        ]

    async def list_user_posts(self, caller: int, user_id: int, size: int, token: str) -> Page:
        user = user_id or caller
        n = page_size(size, POSTS_PAGE, MAX_POSTS_PAGE)
        before = self.tokens.check(token, USER_POSTS, caller, scope=user)
        await self.warmer.ensure()
        source = Source(IdList.posts(user))
        found = await merge_newest(self.store, [source], before, None, n + 1)
        if not found and before is None and not await self.authors.exists(user):
            raise NotFound(f"user {user} does not exist", reason="USER_NOT_FOUND")
        views = await self.hydrate(found[:n])
        more = len(found) > n
        next_token = (
            self.tokens.issue(USER_POSTS, caller, found[n - 1].post_id, scope=user) if more else ""
        )
        return Page(views, next_token)

    # --- follow graph ----------------------------------------------------------------
    async def follow(self, user: int, author: int) -> bool:
        check_user_id(author)
        if author == user:
            raise InvalidArgument.field(
                "user_id", "a user cannot follow themselves", reason="CANNOT_FOLLOW_SELF"
            )
        await self.removal.refuse_if_removed(user)
        if not await self.authors.exists(author):
            raise NotFound(f"user {author} does not exist", reason="USER_NOT_FOUND")
        await self.warmer.ensure()
        following = await self.store.graph.following_count(user)
        if following >= self.config.max_following:
            if await self.store.graph.is_following(user, author):
                return False
            raise ResourceExhausted(
                f"already following {following} accounts (limit {self.config.max_following})",
                reason="TOO_MANY_FOLLOWING",
            )
        changed = await self.records.follow(user, author, self.clock())
        await self.store.graph.follow(user, author)  # also repairs a cache that missed it
        if changed:
            await self.timeline.merge_author(user, author)
            await self.store.timelines.announce_following_changed(user)
        return changed

    async def unfollow(self, user: int, author: int) -> bool:
        check_user_id(author)
        await self.warmer.ensure()
        changed = await self.records.unfollow(user, author)
        await self.store.graph.unfollow(user, author)  # also repairs a cache that missed it
        if changed:
            await self.timeline.remove(user, author=author)
            await self.store.timelines.announce_following_changed(user)
        return changed

    async def set_post_alerts(self, user: int, author: int, enabled: bool) -> None:
        """Turn ``user``'s alerts for ``author``'s new posts on or off (on needs a follow)."""
        check_user_id(author, "author_id")
        if author == user:
            raise InvalidArgument.field(
                "author_id",
                "a user cannot get alerts for their own posts",
                reason="CANNOT_ALERT_SELF",
            )
        await self.warmer.ensure()
        outcome = await self.records.set_alerts(
            user,
            author,
            enabled,
            self.config.max_post_alerts,
            self.config.max_alerted_followers,
        )
        if outcome == "ok":
            await self.store.alerts.cache(user, author, enabled)
        if outcome == "not_following":
            if not await self.authors.exists(author):  # asked only on the refusal path
                raise NotFound(f"user {author} does not exist", reason="USER_NOT_FOUND")
            raise FailedPrecondition(
                f"follow user {author} before turning on alerts for their posts",
                reason="NOT_FOLLOWING",
                metadata={"author_id": str(author)},
            )
        if outcome == "too_many_user":
            raise ResourceExhausted(
                f"post alerts are on for {self.config.max_post_alerts} authors already",
                reason="TOO_MANY_POST_ALERTS",
            )
        if outcome == "too_many_author":
            raise ResourceExhausted(
                f"user {author} has {self.config.max_alerted_followers} alerted followers already",
                reason="TOO_MANY_POST_ALERTS",
            )

    async def list_post_alerts(self, user: int) -> list[int]:
        return await self.store.alerts.alerting(user)

    async def list_graph(
        self, caller: int, user_id: int, followers: bool, size: int, token: str
    ) -> IdPage:
        user = check_user_id(user_id or caller)  # a service (caller 0) must name the user
        n = page_size(size, GRAPH_PAGE, MAX_GRAPH_PAGE)
        listing = FOLLOWERS if followers else FOLLOWING
        after = self.tokens.check(token, listing, caller, scope=user)
        await self.warmer.ensure()
        ids, total = await self.store.graph.graph_page(user, followers, after, n + 1)
        more = len(ids) > n
        next_token = self.tokens.issue(listing, caller, ids[n - 1], scope=user) if more else ""
        return IdPage(ids[:n], next_token, total)

    # --- feed reads -------------------------------------------------------------------
    async def activity(self, user: int) -> None:
        """Record a read; a user back from inactivity gets a stale cache (rebuilt)."""
        now = self.clock()
        if self._returning(await self.store.timelines.touch_seen(user, now), now):
            await self.store.timelines.set_stale(user, True)

    def _returning(self, previous_seen: int | None, now: int) -> bool:
        """True for a reader who is new or was away longer than ``inactive_after``."""
        return previous_seen is None or previous_seen < now - int(self.config.inactive_after * 1000)

    async def context(self, user: int, touch: bool = True) -> ReadContext:
        """The reader's context; a read counts as activity, and a reader back from
        inactivity (or new) gets a stale cache: pulled at read time, rebuilt behind."""
        await self.warmer.ensure()
        now = self.clock()
        ctx = await self.timeline.context(user, now if touch else None)
        if not ctx.meta.warm:  # Redis lost the caches since the warmer last looked
            self.warmer.forget()
            await self.warmer.ensure()
            seen = ctx.previous_seen  # the activity was recorded by the first read
            ctx = await self.timeline.context(user)
            ctx.previous_seen = seen
        if touch and self._returning(ctx.previous_seen, now):
            await self.store.timelines.set_stale(user, True)
            ctx.use_cache = False
        if not ctx.use_cache:
            self.timeline.rebuild_soon(user)
        return ctx

    async def collect(
        self, ctx: ReadContext, upper: int | None, lower: int | None, n: int
    ) -> tuple[list[PostView], int | None]:
        """Up to ``n`` shown posts below ``upper`` (and at/above ``lower``), newest first.

        The second value is the id to page on from when more may follow, else None.
        """
        out: list[PostView] = []
        cursor = upper
        for _ in range(MAX_HYDRATE_ROUNDS):
            want = n + 1 - len(out)
            batch = await self.timeline.entries(ctx, cursor, lower, want)
            if not batch:
                break
            cursor = batch[-1].post_id
            out += await self.hydrate([e for e in batch if e.author_id in ctx.following])
            if len(out) > n:
                return out[:n], out[n - 1].post_id
            if len(batch) < want:
                break
        else:  # many deleted entries in a row: hand back a shorter page and go on later
            return out, cursor
        return out, None

    async def get_feed(self, user: int, size: int, token: str) -> Page:
        n = page_size(size, POSTS_PAGE, MAX_POSTS_PAGE)
        before = self.tokens.check(token, FEED, user)
        ctx = await self.context(user)
        posts, next_id = await self.collect(ctx, before, None, n)
        next_token = self.tokens.issue(FEED, user, next_id) if next_id else ""
        return Page(posts, next_token)

    # --- operators ----------------------------------------------------------------------
    async def fanout_status(self, caller: int | None, post_id: int) -> FanoutStatus:
        """A post's fanout progress and the queue's state (post author or a service)."""
        now = self.clock()
        length, pending, oldest = await self.store.queue.queue_stats(now)
        queue = {
            "queue_pending": pending,
            "queue_waiting": max(0, length - pending),
            "queue_oldest_ms": oldest,
        }
        if post_id == 0:
            return FanoutStatus("UNKNOWN", **queue)
        if caller is not None:
            (found,) = await self.store.posts.get_posts([post_id])
            if found is None:
                raise NotFound(f"post {post_id} does not exist", reason="POST_NOT_FOUND")
            if found.author_id != caller:
                raise PermissionDenied(
                    "only the post's author or a service may read its fanout",
                    reason="NOT_POST_AUTHOR",
                )
        record = await self.store.queue.progress(post_id)
        if not record:
            return FanoutStatus("UNKNOWN", **queue)
        created = int(record.get("created_ms", now))
        finished = int(record["finished_ms"]) if "finished_ms" in record else None
        lag = (finished if finished is not None else now) - created
        if record.get("state") == "pulled":
            return FanoutStatus("PULLED_AT_READ", lag_ms=0, **queue)
        total = int(record.get("total", 0))
        skipped = int(record.get("skipped", 0))
        done = int(record.get("written", 0)) + skipped
        state = "DONE" if finished is not None else "RUNNING"
        pending = 0 if finished is not None else max(0, total - done)
        return FanoutStatus(state, total, done, pending, skipped, lag, **queue)

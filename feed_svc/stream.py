"""A StreamFeed session: live feed items for one connected user, resumable without gaps.

On subscribe the session first listens (the user's live channel, and the channel of each
celebrity the user follows) and marks the user live (fanout publishes to them), then reads
what the client missed, so nothing falls between the catch-up read and the live messages;
duplicates are dropped by post id.

Items arrive in the order they land, not in id order (a celebrity's post lands at once, an
older ordinary post after its fanout), so resuming "after the newest id seen" alone could
skip an older post that landed later. Every frame therefore carries a resume token: a
position in the landed log (:data:`feed_svc.keys.LANDED_KEY`) such that every post logged
up to it was sent before the frame or with it. Each queued item is tagged with the hub's
landed position when it was queued (:attr:`feed_svc.live.LiveHub.landed`); the token after
a frame is the tag of the item queued after it, or the hub's position when none is. A
resume with a token replays, besides the feed's items newer than the last id seen, the
posts logged after the token and the posts of chunk jobs that workers hold (their writes
may have begun before the stream listened; they are logged only when acknowledged).
Items the client already had may come again.

Messages only queue (bounded: a client that falls behind is cut off and resumes); the
transport pulls frames with :meth:`FeedStream.next_frames`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from dataclasses import dataclass

from feed_svc.feed import Feed, Page, PostView
from feed_svc.keys import parse_entry
from feed_svc.live import LiveHub, stream_channels
from feed_svc.timeline import FeedEntry, ReadContext
from feedchat_runtime.errors import (
    FeedchatError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from feedchat_runtime.snowflake import compose

logger = logging.getLogger(__name__)

SENT_MEMORY = 4096
"""Post ids remembered per stream to drop duplicates."""
RESUME_SCAN_MAX = 20_000
"""Landed-log entries a resume reads at most (more: the subscribed frame says truncated)."""
RESUME_PENDING_MAX = 1000
"""Unacknowledged fanout jobs a resume reads at most."""
_TOKEN = re.compile(r"v1:([0-9]{1,20})-([0-9]{1,20})")


def resume_token(position: str) -> str:
    """The token for a landed-log position ('' stays '': the frame moves no token)."""
    return f"v1:{position}" if position else ""


def parse_resume_token(token: str) -> tuple[int, int] | None:
    """The landed-log position in a token (None for ''); INVALID_ARGUMENT if malformed."""
    if not token:
        return None
    found = _TOKEN.fullmatch(token)
    if found is None or any(int(part) >= 2**64 for part in found.groups()):
        raise InvalidArgument.field(
            "subscribe.resume_token",
            "not a resume token this server issued",
            reason="RESUME_TOKEN_INVALID",
        )
    return int(found[1]), int(found[2])


def _position(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Subscribed:
    resumed: int
    truncated: bool


@dataclass(frozen=True)
class Refreshed:
    page: Page


@dataclass(frozen=True)
class Checkpoint:
    """No item: only a newer resume token (sent while the feed is quiet)."""


@dataclass(frozen=True)
class Removed:
    """A post of a followed author (or the user's own) was deleted."""

    post_id: int
    author_id: int


Frame = PostView | Subscribed | Refreshed | Checkpoint | Removed


@dataclass(frozen=True)
class Queued:
    """A queued item and its tag: the landed position a resume may start from once
    everything queued before this item has been sent ('' for none)."""

    item: FeedEntry | Subscribed | Refreshed | Checkpoint | Removed
    mark: str


class FeedStream:
    """One user's open StreamFeed."""

    def __init__(
        self,
        feed: Feed,
        hub: LiveHub,
        user: int,
        stop: asyncio.Event,
        queue_max: int,
        resume_max: int,
        touch_every: float,
    ) -> None:
        self.feed = feed
        self.hub = hub
        self.user = user
        self.stop = stop
        self.queue_max = queue_max
        self.resume_max = resume_max
        self.touch_every = touch_every
        self._queue: collections.deque[Queued] = collections.deque()
        self._wake = asyncio.Event()
        self._error: FeedchatError | None = None
        self._sent: set[int] = set()
        self._sent_order: collections.deque[int] = collections.deque()
        self._newest = 0
        self._ctx: ReadContext | None = None
        self._channels: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._resyncing = asyncio.Lock()
        self._start_mark = ""  # the landed log's newest position when the stream began
        self._sent_mark = ""  # the position of the last token sent

    # --- lifecycle ----------------------------------------------------------------------
    async def open(self, resume_after: int, resume_token: str = "") -> None:
        since = parse_resume_token(resume_token)
        self.hub.on_control(self._on_control)
        await self._follow_channels()  # listen first, then ask fanout to publish to us
        await self._mark_live()
        after = resume_after or await self.feed.store.timelines.get_ack(self.user)
        now = self.feed.clock()
        # Resyncs look for posts newer than the newest shown, or than the stream's start.
        self._newest = max(after, compose(now, 0, 0))
        state = await self.feed.store.queue.resume_state(
            resume_token.removeprefix("v1:") if since else None,
            RESUME_SCAN_MAX,
            RESUME_PENDING_MAX,
        )
        self._start_mark = state.mark
        ctx = self._ctx
        assert ctx is not None
        found: dict[int, FeedEntry] = {}
        truncated = False
        if after:
            newer = await self.feed.timeline.entries(ctx, None, after + 1, self.resume_max + 1)
            truncated = len(newer) > self.resume_max
            found.update((e.post_id, e) for e in newer[: self.resume_max])
        if since is not None:
            window_ms = int(self.feed.config.stream_resume_window * 1000)
            # Older than the log keeps, or newer than its end (the log was lost): some
            # landings cannot be known.
            lost = since[0] < now - window_ms or since > _position(state.mark)
            truncated = truncated or lost or state.more
            for member in state.landed + state.pending:
                item = FeedEntry(*parse_entry(member))
                found.setdefault(item.post_id, item)
        missed = sorted(e for e in found.values() if e.author_id in ctx.following)
        if len(missed) > self.resume_max:
            truncated, missed = True, missed[-self.resume_max :]
        # Missed items go first (oldest first), ahead of live items queued meanwhile; until
        # they are all sent, a resume must start where this one did.
        tag = resume_token.removeprefix("v1:") if since else ""
        front = [Queued(e, tag) for e in missed]
        front.append(Queued(Subscribed(len(missed), truncated), state.mark))
        self._queue.extendleft(reversed(front))
        self._wake.set()
        self._tasks.append(asyncio.create_task(self._watch(), name=f"feed-stream-{self.user}"))

    async def close(self) -> None:
        self.hub.on_control(self._on_control, add=False)
        tasks = list(self._tasks)  # resync tasks remove themselves when done
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.hub.unsubscribe(self._channels, self._on_message)
        self._channels.clear()

    async def _watch(self) -> None:
        """Keep the user active while connected; wake the reader when the server drains."""
        stop = asyncio.create_task(self.stop.wait())
        try:
            while True:
                await asyncio.wait([stop], timeout=self.touch_every)
                if stop.done():
                    self._wake.set()
                    return
                try:
                    await self.feed.activity(self.user)
                    await self._mark_live()
                except Exception as exc:  # Redis briefly away: try again next period
                    logger.warning("stream keep-alive for user %s failed: %s", self.user, exc)
                if not self._queue and self._current_mark() != self._sent_mark:
                    self._offer(Checkpoint(), bounded=False)  # a fresher token, quiet feed
        finally:
            stop.cancel()

    async def _mark_live(self) -> None:
        """Tell fanout to publish this user's entries (for a few touch periods)."""
        until = self.feed.clock() + int(3 * self.touch_every * 1000)
        await self.feed.store.timelines.mark_streaming(self.user, until)

    # --- client frames ------------------------------------------------------------------
    async def ack(self, post_id: int) -> None:
        await self.feed.store.timelines.set_ack(self.user, post_id)

    async def refresh(self, page_size: int) -> None:
        page = await self.feed.get_feed(self.user, page_size, "")
        self._offer(Refreshed(page), bounded=False)

    def fail(self, error: FeedchatError) -> None:
        self._error = error
        self._wake.set()

    # --- server frames ------------------------------------------------------------------
    async def next_frames(self) -> list[tuple[Frame, str]] | None:
        """The next frames to send, each with its resume token ('' for none); None when
        the stream should end cleanly."""
        while True:
            if self._error is not None:
                raise self._error
            if self.stop.is_set():
                return None
            if self._queue:
                return await self._take()
            self._wake.clear()
            await self._wake.wait()

    async def _take(self) -> list[tuple[Frame, str]]:
        """The next frames, each with the resume token valid once it is received."""
        head = self._queue.popleft()
        if not isinstance(head.item, FeedEntry):
            return [(head.item, self._token_after())]
        batch = [head]
        while self._queue and isinstance(self._queue[0].item, FeedEntry) and len(batch) < 100:
            batch.append(self._queue.popleft())
        follows = [q.mark for q in batch[1:]]
        follows.append(self._queue[0].mark if self._queue else self._current_mark())
        token_after: dict[int, str] = {}
        fresh: list[FeedEntry] = []
        for queued, mark in zip(batch, follows, strict=True):
            item = queued.item
            assert isinstance(item, FeedEntry)
            if item.post_id not in self._sent and item.post_id not in token_after:
                token_after[item.post_id] = mark
                fresh.append(item)
        views = await self.feed.hydrate(fresh)
        for view in views:
            self._remember(view.post_id)
        if views:
            self._sent_mark = token_after[views[-1].post_id] or self._sent_mark
        return [(view, resume_token(token_after[view.post_id])) for view in views]

    def _token_after(self) -> str:
        """The token after the frame just taken: the next item's tag, else the hub's."""
        mark = self._queue[0].mark if self._queue else self._current_mark()
        self._sent_mark = mark or self._sent_mark
        return resume_token(mark)

    def _current_mark(self) -> str:
        landed = self.hub.landed
        return landed if landed is not None else self._start_mark

    def _remember(self, post_id: int) -> None:
        self._sent.add(post_id)
        self._sent_order.append(post_id)
        self._newest = max(self._newest, post_id)
        if len(self._sent_order) > SENT_MEMORY:
            self._sent.discard(self._sent_order.popleft())

    def _offer(
        self, item: FeedEntry | Refreshed | Checkpoint | Removed, bounded: bool = True
    ) -> None:
        if bounded and len(self._queue) >= self.queue_max:
            self.fail(
                ResourceExhausted(
                    f"the client fell more than {self.queue_max} items behind; resume from the "
                    "last post id and resume token seen",
                    reason="STREAM_TOO_SLOW",
                )
            )
            return
        self._queue.append(Queued(item, self._current_mark()))
        self._wake.set()

    # --- live messages ------------------------------------------------------------------
    def _on_message(self, channel: str, data: str) -> None:
        if data.startswith("ctl:"):
            self._spawn_resync()
            return
        try:
            item = FeedEntry(*parse_entry(data))
        except ValueError:
            logger.warning("ignoring malformed live message %r on %s", data, channel)
            return
        ctx = self._ctx
        if ctx is not None and item.author_id not in ctx.following:
            return
        self._offer(item)

    def _on_control(self, channel: str, data: str) -> None:
        kind, _, value = data.partition(":")
        if kind == "reset":
            self.fail(
                Unavailable(
                    "the server lost its live feed connection; resume with the last post id "
                    "and resume token seen",
                    reason="STREAM_RESET",
                )
            )
            return
        ctx = self._ctx
        if kind == "promoted" and ctx is not None and value.isdigit():
            if int(value) in ctx.following:
                self._spawn_resync()
        if kind == "removed" and ctx is not None:
            post, _, author = value.partition(":")
            if post.isdigit() and author.isdigit():
                if int(author) in ctx.following or int(author) == self.user:
                    self._offer(Removed(int(post), int(author)))

    def _spawn_resync(self) -> None:
        task = asyncio.create_task(self._resync(), name=f"feed-resync-{self.user}")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _follow_channels(self) -> None:
        """(Re)read whom the user follows and listen to the matching channels."""
        ctx = await self.feed.context(self.user)
        self._ctx = ctx
        wanted = stream_channels(self.user, ctx.celebrities)
        await self.hub.subscribe(wanted - self._channels, self._on_message)
        await self.hub.unsubscribe(self._channels - wanted, self._on_message)
        self._channels = wanted

    async def _resync(self) -> None:
        """After a follow change or a promotion: new channels, then what they missed."""
        try:
            async with self._resyncing:
                await self._follow_channels()
                assert self._ctx is not None
                newer = await self.feed.timeline.entries(
                    self._ctx, None, self._newest + 1, self.resume_max
                )
                for item in reversed(newer):
                    if item.post_id not in self._sent:
                        self._offer(item)
        except FeedchatError as exc:
            self.fail(exc)
        except Exception:
            logger.exception("stream resync failed for user %s", self.user)


def second_subscribe() -> InvalidArgument:
    return InvalidArgument.field(
        "subscribe", "only the first frame may subscribe", reason="ALREADY_SUBSCRIBED"
    )

"""A StreamFeed session: live feed items for one connected user, resumable.

On subscribe the session first listens (the user's live channel, and the channel of each
celebrity the user follows), then reads what the client missed since its last seen post,
so nothing falls between the catch-up read and the live messages; duplicates are dropped
by post id. Messages only queue (bounded: a client that falls behind is cut off and
resumes from its last post id); the transport pulls frames with :meth:`next_frames`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass

from feed_svc import store as keys
from feed_svc.feed import Feed, Page, PostView
from feed_svc.live import LiveHub
from feed_svc.store import parse_entry
from feed_svc.timeline import FeedEntry, ReadContext
from feedchat_runtime.errors import FeedchatError, InvalidArgument, ResourceExhausted
from feedchat_runtime.snowflake import compose

logger = logging.getLogger(__name__)

SENT_MEMORY = 4096
"""Post ids remembered per stream to drop duplicates."""


@dataclass(frozen=True)
class Subscribed:
    resumed: int
    truncated: bool


@dataclass(frozen=True)
class Refreshed:
    page: Page


Frame = PostView | Subscribed | Refreshed


class FeedStream:
    """One user's open StreamFeed."""

    def __init__(
        self, feed: Feed, hub: LiveHub, user: int, stop: asyncio.Event,
        queue_max: int, resume_max: int, touch_every: float,
    ) -> None:
        self.feed = feed
        self.hub = hub
        self.user = user
        self.stop = stop
        self.queue_max = queue_max
        self.resume_max = resume_max
        self.touch_every = touch_every
        self._queue: collections.deque[FeedEntry | Subscribed | Refreshed] = collections.deque()
        self._wake = asyncio.Event()
        self._error: FeedchatError | None = None
        self._sent: set[int] = set()
        self._sent_order: collections.deque[int] = collections.deque()
        self._newest = 0
        self._ctx: ReadContext | None = None
        self._channels: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._resyncing = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------------
    async def open(self, resume_after: int) -> None:
        self.hub.on_control(self._on_control)
        await self._follow_channels()  # listen first, then ask fanout to publish to us
        await self._mark_live()
        after = resume_after or await self.feed.store.get_ack(self.user)
        # Resyncs look for posts newer than the newest shown, or than the stream's start.
        self._newest = max(after, compose(self.feed.clock(), 0, 0))
        resumed, truncated = 0, False
        if after:
            assert self._ctx is not None
            missed = await self.feed.timeline.entries(self._ctx, None, after + 1,
                                                      self.resume_max + 1)
            truncated = len(missed) > self.resume_max
            missed = [e for e in missed[: self.resume_max] if e.author_id in self._ctx.following]
            resumed = len(missed)
            # Missed items go first (oldest first), ahead of live items queued meanwhile.
            self._queue.appendleft(Subscribed(resumed, truncated))
            self._queue.extendleft(missed)  # extendleft reverses: oldest ends up first
        else:
            self._queue.appendleft(Subscribed(0, False))
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
        finally:
            stop.cancel()

    async def _mark_live(self) -> None:
        """Tell fanout to publish this user's entries (for a few touch periods)."""
        until = self.feed.clock() + int(3 * self.touch_every * 1000)
        await self.feed.store.mark_streaming(self.user, until)

    # --- client frames ------------------------------------------------------------------
    async def ack(self, post_id: int) -> None:
        await self.feed.store.set_ack(self.user, post_id)

    async def refresh(self, page_size: int) -> None:
        page = await self.feed.get_feed(self.user, page_size, "")
        self._offer(Refreshed(page), bounded=False)

    def fail(self, error: FeedchatError) -> None:
        self._error = error
        self._wake.set()

    # --- server frames ------------------------------------------------------------------
    async def next_frames(self) -> list[Frame] | None:
        """The next frames to send; None when the stream should end cleanly."""
        while True:
            if self._error is not None:
                raise self._error
            if self.stop.is_set():
                return None
            if self._queue:
                return await self._take()
            self._wake.clear()
            await self._wake.wait()

    async def _take(self) -> list[Frame]:
        head = self._queue.popleft()
        if not isinstance(head, FeedEntry):
            return [head]
        batch = [head]
        while self._queue and isinstance(self._queue[0], FeedEntry) and len(batch) < 100:
            item = self._queue.popleft()
            assert isinstance(item, FeedEntry)
            batch.append(item)
        fresh = [e for e in batch if e.post_id not in self._sent]
        views = await self.feed.hydrate(fresh)
        for view in views:
            self._remember(view.post_id)
        return list(views)

    def _remember(self, post_id: int) -> None:
        self._sent.add(post_id)
        self._sent_order.append(post_id)
        self._newest = max(self._newest, post_id)
        if len(self._sent_order) > SENT_MEMORY:
            self._sent.discard(self._sent_order.popleft())

    def _offer(self, item: FeedEntry | Subscribed | Refreshed, bounded: bool = True) -> None:
        if bounded and len(self._queue) >= self.queue_max:
            self.fail(ResourceExhausted(
                f"the client fell more than {self.queue_max} items behind; resume from the "
                "last post id seen", reason="STREAM_TOO_SLOW",
            ))
            return
        self._queue.append(item)
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
        ctx = self._ctx
        if kind == "promoted" and ctx is not None and value.isdigit():
            if int(value) in ctx.following:
                self._spawn_resync()

    def _spawn_resync(self) -> None:
        task = asyncio.create_task(self._resync(), name=f"feed-resync-{self.user}")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _follow_channels(self) -> None:
        """(Re)read whom the user follows and listen to the matching channels."""
        ctx = await self.feed.context(self.user)
        self._ctx = ctx
        wanted = {keys.live_channel(self.user)}
        wanted |= {keys.author_channel(a) for a in ctx.celebrities}
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

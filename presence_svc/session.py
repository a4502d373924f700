"""One Connect stream's watch list and the frames waiting to go out on it.

A session watches up to ``max_watch`` users through the instance's
:class:`~presence_svc.hub.SubscriptionHub`. Adding users subscribes first and reads their
current state second, so no transition falls between the two; transitions that arrive
while the snapshot is being read are held and delivered after it, and each user's version
drops any event the snapshot already covers. The outbound queue is bounded: a client that
stops reading is told so and cut off instead of growing this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from feedchat_runtime.errors import FeedchatError, InvalidArgument, ResourceExhausted
from presence_svc.hub import SubscriptionHub
from presence_svc.presence import Presence, PresenceTracker, presence_of
from presence_svc.store import StoredState


@dataclass(frozen=True)
class SnapshotFrame:
    """Current presence of users just added to the watch list (``first``: the opening)."""

    presences: list[Presence]
    first: bool


@dataclass(frozen=True)
class ChangeFrame:
    """One transition of a watched user."""

    presence: Presence


@dataclass(frozen=True)
class EndFrame:
    """The stream is over: cleanly (``error`` None) or with an error for the client."""

    error: FeedchatError | None = None
    client_closed: bool = False


Frame = SnapshotFrame | ChangeFrame | EndFrame


class WatchSession:
    """Watch list, version bookkeeping and outbound queue of one stream."""

    def __init__(
        self,
        user_id: int,
        tracker: PresenceTracker,
        hub: SubscriptionHub,
        max_watch: int,
        queue_limit: int,
    ) -> None:
        self.user_id = user_id
        self._tracker = tracker
        self._hub = hub
        self._max_watch = max_watch
        self._queue_limit = queue_limit
        self.queue: asyncio.Queue[Frame] = asyncio.Queue()
        self.watching: set[int] = set()
        self._versions: dict[int, int] = {}
        self._held: list[Presence] | None = None
        self._ended = False

    def end(self, frame: EndFrame) -> None:
        """Put the final frame (first one wins); the writer stops at it."""
        if not self._ended:
            self._ended = True
            self.queue.put_nowait(frame)

    def _put(self, frame: SnapshotFrame | ChangeFrame) -> None:
        if self._ended:
            return
        if self.queue.qsize() >= self._queue_limit:
            self.end(
                EndFrame(
                    ResourceExhausted(
                        "the stream fell too far behind; reconnect", reason="STREAM_TOO_SLOW"
                    )
                )
            )
            return
        self.queue.put_nowait(frame)

    def _on_event(self, _channel: str, state: StoredState) -> None:
        presence = presence_of(state)
        if presence.user_id not in self.watching:
            return
        if self._held is not None:
            self._held.append(presence)
            return
        self._deliver(presence)

    def _deliver(self, presence: Presence) -> None:
        if presence.version <= self._versions.get(presence.user_id, 0):
            return  # the snapshot (or an earlier event) already said this
        self._versions[presence.user_id] = presence.version
        self._put(ChangeFrame(presence))

    def _check_frame(self, name: str, user_ids: list[int]) -> None:
        if len(user_ids) > self._max_watch:
            raise InvalidArgument.field(
                f"{name}.user_ids",
                f"at most {self._max_watch} ids per frame",
                reason="WATCH_LIST_TOO_LONG",
            )
        if any(uid <= 0 for uid in user_ids):
            raise InvalidArgument.field(f"{name}.user_ids", "ids must be positive")

    async def open(self, initial: Iterable[int]) -> None:
        """Start watching ``initial`` (clipped to the limit) and queue the first snapshot."""
        ids = sorted(set(initial))[: self._max_watch]
        await self._add(ids, first=True)

    async def watch(self, user_ids: list[int], replace: bool) -> None:
        """Apply a watch frame: add ``user_ids``, or make them the whole list."""
        self._check_frame("watch", user_ids)
        wanted = set(user_ids)
        target = wanted if replace else self.watching | wanted
        if len(target) > self._max_watch:
            raise InvalidArgument.field(
                "watch.user_ids",
                f"the watch list holds at most {self._max_watch} users",
                reason="WATCH_LIST_TOO_LONG",
            )
        dropped = self.watching - target
        if dropped:
            await self._remove(dropped)
        added = sorted(target - self.watching)
        if added:
            await self._add(added, first=False)

    async def unwatch(self, user_ids: list[int]) -> None:
        """Apply an unwatch frame (ids not watched are ignored)."""
        self._check_frame("unwatch", user_ids)
        await self._remove(set(user_ids) & self.watching)

    async def _add(self, user_ids: list[int], first: bool) -> None:
        self.watching.update(user_ids)
        self._held = []
        try:
            await self._hub.add(user_ids, self._on_event)
            presences = await self._tracker.lookup(user_ids)
        except BaseException:
            self._held = None
            raise
        for presence in presences:
            self._versions[presence.user_id] = presence.version
        self._put(SnapshotFrame(presences, first))
        held, self._held = self._held, None
        for presence in held:
            self._deliver(presence)

    async def _remove(self, user_ids: set[int]) -> None:
        self.watching -= user_ids
        for uid in user_ids:
            self._versions.pop(uid, None)
        await self._hub.remove(user_ids, self._on_event)

    async def close(self) -> None:
        """Leave the hub (unsubscribing users nobody else here watches)."""
        watched, self.watching = self.watching, set()
        await self._hub.remove(watched, self._on_event)

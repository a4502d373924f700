"""Removing a deleted account from the feed (DeleteUserContent, called by account_svc).

Order matters. The account is marked removed in Redis first, so a CreatePost or Follow
that is still in flight with the user's last access token either lands before the sweep
below (and is swept) or sees the mark (and is refused; CreatePost checks after storing and
takes its post back). The record goes next: in one transaction the account is marked
removed in PostgreSQL (``removed_users``, kept for good) and its posts, request records
and follow edges leave, so a refill of the Redis caches cannot bring them back, and a post
or follow recorded later is refused by PostgreSQL itself even after Redis lost its mark.
Then posts are deleted from the caches through the store's post deletion, and every
follower's cache loses the user's entries through :meth:`Timeline.remove` (the one
removal path, which keeps the range the cache is complete for) before the follow edge
goes. Everything is idempotent: account_svc retries until a call succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from feed_svc.records import account_deleted
from feed_svc.store import FeedStore
from feed_svc.timeline import Timeline
from feedchat_runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

BATCH = 200
"""Posts or follow edges read (and removed) per round."""


@dataclass(frozen=True)
class Removed:
    posts: int
    followers: int


class UserRemoval:
    """Deletes a removed account's posts and follow edges, and guards its writes."""

    def __init__(self, store: FeedStore, timeline: Timeline, clock: Callable[[], int]) -> None:
        self.store = store
        self.clock = clock
        self.removals = store.removals
        self.timeline = timeline

    async def refuse_if_removed(self, user: int) -> None:
        if await self.removals.is_removed(user):
            raise account_deleted(user)

    async def remove(self, user: int) -> Removed:
        if user <= 0:
            raise InvalidArgument.field("user_id", "a user id is required")
        await self.removals.mark(user)
        # The record first: caches refill from it, and it refuses the account's later writes.
        await self.store.records.remove_user(user, self.clock())
        posts = 0
        while ids := await self.removals.post_ids(user, BATCH):
            for post_id in ids:
                await self.store.posts.delete_post(post_id, user)
            posts += len(ids)
        followers = 0
        while batch := await self.removals.followers(user, BATCH):
            for follower in batch:
                await self.timeline.remove(follower, author=user)
                await self.store.graph.unfollow(follower, user)
                await self.store.timelines.announce_following_changed(follower)
            followers += len(batch)
        while authors := await self.removals.following(user, BATCH):
            for author in authors:
                await self.store.graph.unfollow(user, author)
        logger.info(
            "removed deleted account from the feed",
            extra={"user_id": user, "posts": posts, "followers": followers},
        )
        return Removed(posts, followers)

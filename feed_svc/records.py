"""The follow graph (with post alerts settings) and posts in PostgreSQL, the record
(``migrations/001_feed.sql``).

The domain writes here first and acknowledges nothing that failed here; Redis
(:mod:`feed_svc.store`) keeps copies as caches: follower and following lists, each
author's post ids, post bodies, the celebrity list. :mod:`feed_svc.warmup` refills them
from here, in batches, after Redis lost them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from feed_svc import post_requests
from feed_svc.post_requests import PostRequest
from feedchat_runtime.errors import PermissionDenied
from feedchat_runtime.postgres import Database, open_database

COMPONENT = "feed"
"""The name feed_svc's migrations are recorded under."""


async def open_records(url: str, pool_size: int) -> Database:
    """Connect to the record and bring feed_svc's schema up to date."""
    return await open_database(url, COMPONENT, "feed_svc", pool_size)


def account_deleted(user: int) -> PermissionDenied:
    return PermissionDenied(f"account {user} was deleted", reason="ACCOUNT_DELETED")


@dataclass(frozen=True)
class StoredPost:
    post_id: int
    author_id: int
    text: str


class FeedRecords:
    """The follows, posts and post_requests tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- follow graph ----------------------------------------------------------------
    async def follow(self, follower: int, author: int, now_ms: int) -> bool:
        """Record a follow; False when it was there already. A removed follower is
        refused here (PERMISSION_DENIED ``ACCOUNT_DELETED``), whatever Redis says."""
        (row,) = await self._db.fetch(
            "WITH gone AS (SELECT 1 FROM removed_users WHERE user_id = $1), "
            "added AS (INSERT INTO follows (follower_id, author_id, created_ms) "
            "SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM gone) "
            "ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT EXISTS (SELECT 1 FROM gone) AS gone, EXISTS (SELECT 1 FROM added) AS added",
            follower,
            author,
            now_ms,
        )
        if row["gone"]:
            raise account_deleted(follower)
        return bool(row["added"])

    async def unfollow(self, follower: int, author: int) -> bool:
        removed = await self._db.fetchval(
            "DELETE FROM follows WHERE follower_id = $1 AND author_id = $2 RETURNING true",
            follower,
            author,
        )
        return bool(removed)

    async def follows_after(
        self, after: tuple[int, int], limit: int
    ) -> list[tuple[int, int, bool]]:
        """Up to ``limit`` (follower, author, alerts on) rows whose pair comes after
        ``after``, in key order: the whole graph page by page (keyset on the primary key)."""
        rows = await self._db.fetch(
            "SELECT follower_id, author_id, alerts FROM follows "
            "WHERE (follower_id, author_id) > ($1, $2) "
            "ORDER BY follower_id, author_id LIMIT $3",
            after[0],
            after[1],
            limit,
        )
        return [(row["follower_id"], row["author_id"], row["alerts"]) for row in rows]

    async def followers_after(self, after: tuple[int, int], limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (author, follower) pairs coming after ``after`` in author order:
        every author's followers page by page (keyset on ``follows_by_author``)."""
        rows = await self._db.fetch(
            "SELECT author_id, follower_id FROM follows "
            "WHERE (author_id, follower_id) > ($1, $2) "
            "ORDER BY author_id, follower_id LIMIT $3",
            after[0],
            after[1],
            limit,
        )
        return [(row["author_id"], row["follower_id"]) for row in rows]

    async def set_alerts(
        self, user: int, author: int, enabled: bool, max_per_user: int, max_per_author: int
    ) -> str:
        """Turn ``user``'s post alerts for ``author`` on or off: ``ok``, ``not_following``,
        ``too_many_user`` or ``too_many_author``. Turning them on locks the user's and the
        author's alert counts (advisory locks, always in that order), so concurrent calls
        cannot pass either limit."""
        async with self._db.transaction() as conn:
            if not enabled:
                await conn.execute(
                    "UPDATE follows SET alerts = false WHERE follower_id = $1 AND author_id = $2",
                    user,
                    author,
                )
                return "ok"
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('feed.alerting:' || $1, 0)), "
                "pg_advisory_xact_lock(hashtextextended('feed.alerts:' || $2, 0))",
                str(user),
                str(author),
            )
            current = await conn.fetchval(
                "SELECT alerts FROM follows WHERE follower_id = $1 AND author_id = $2",
                user,
                author,
            )
            if current is None:
                return "not_following"
            if current:
                return "ok"
            if (
                await conn.fetchval(
                    "SELECT count(*) FROM follows WHERE follower_id = $1 AND alerts", user
                )
                >= max_per_user
            ):
                return "too_many_user"
            if (
                await conn.fetchval(
                    "SELECT count(*) FROM follows WHERE author_id = $1 AND alerts", author
                )
                >= max_per_author
            ):
                return "too_many_author"
            await conn.execute(
                "UPDATE follows SET alerts = true WHERE follower_id = $1 AND author_id = $2",
                user,
                author,
            )
            return "ok"

    async def popular_authors(self, threshold: int) -> list[int]:
        """Authors with more than ``threshold`` followers (the celebrities)."""
        rows = await self._db.fetch(
            "SELECT author_id FROM follows GROUP BY author_id HAVING count(*) > $1", threshold
        )
        return [row["author_id"] for row in rows]

    # --- posts ----------------------------------------------------------------------
    async def create_post(
        self, post: StoredPost, now_ms: int, request: PostRequest | None = None
    ) -> str | None:
        """Record a post (and its request id's record, in one transaction). When an earlier
        call with that request id recorded a post, nothing is written and that call's
        record (``<post id>:<digest>``) is returned."""
        async with self._db.transaction() as conn:
            if request is not None:
                earlier = await post_requests.claim(conn, request, post.post_id, now_ms)
                if earlier is not None:
                    return earlier
            status = await conn.execute(
                "INSERT INTO posts (post_id, author_id, text, created_ms) "
                "SELECT $1, $2, $3, $4 "
                "WHERE NOT EXISTS (SELECT 1 FROM removed_users WHERE user_id = $2)",
                post.post_id,
                post.author_id,
                post.text,
                now_ms,
            )
            if status == "INSERT 0 0":  # rolls the request record back with it
                raise account_deleted(post.author_id)
        return None

    async def recorded(self, request: PostRequest, now_ms: int) -> str | None:
        async with self._db.connection() as conn:
            return await post_requests.recorded(conn, request, now_ms)

    async def delete_post(self, post_id: int) -> None:
        await self._db.execute("DELETE FROM posts WHERE post_id = $1", post_id)

    async def remove_user(self, user: int, now_ms: int) -> None:
        """Mark the account removed (for good) and delete its posts, request records and
        follow edges (both directions) in one transaction, so no cache refill brings them
        back and no later post or follow of the account is recorded."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO removed_users (user_id, removed_ms) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                user,
                now_ms,
            )
            await conn.execute("DELETE FROM posts WHERE author_id = $1", user)
            await conn.execute("DELETE FROM post_requests WHERE author_id = $1", user)
            await conn.execute("DELETE FROM follows WHERE follower_id = $1 OR author_id = $1", user)

    async def posts(self, post_ids: Sequence[int]) -> dict[int, StoredPost]:
        """The existing posts among ``post_ids``, by id."""
        rows = await self._db.fetch(
            "SELECT post_id, author_id, text FROM posts WHERE post_id = ANY($1::bigint[])",
            list(post_ids),
        )
        return {
            row["post_id"]: StoredPost(row["post_id"], row["author_id"], row["text"])
            for row in rows
        }

    async def posts_after(self, after: int, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (post id, author) pairs with ids above ``after``, ascending."""
        rows = await self._db.fetch(
            "SELECT post_id, author_id FROM posts WHERE post_id > $1 ORDER BY post_id LIMIT $2",
            after,
            limit,
        )
        return [(row["post_id"], row["author_id"]) for row in rows]

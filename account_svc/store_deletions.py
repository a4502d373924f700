"""Deleted accounts in PostgreSQL (``migrations/002_deleted_accounts.sql``): deleting a
user's rows while holding the username, and the feed removals still owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from account_svc.store_cache import UserCache
from feedchat_runtime.postgres import Database


class DeletedAccountStore:
    def __init__(self, db: Database, cache: UserCache) -> None:
        self._db = db
        self._cache = cache

    async def delete(self, user_id: int, username: str, hold_ms: int) -> datetime | None:
        """Delete the user (credential, profile and refresh tokens go by cascade) and
        hold the username until the returned time, in one transaction; None when the
        user was already gone."""
        free_at = datetime.now(UTC) + timedelta(milliseconds=hold_ms)
        async with self._db.transaction() as conn:
            status = await conn.execute("DELETE FROM users WHERE user_id = $1", user_id)
            if status.endswith(" 0"):
                return None
            await conn.execute(
                "INSERT INTO deleted_accounts (user_id, username, username_free_at) "
                "VALUES ($1, $2, $3)",
                user_id,
                username,
                free_at,
            )
        await self._cache.drop(user_id)
        return free_at

    async def pending_removals(self, limit: int) -> list[int]:
        """Deleted users whose posts the feed has not confirmed removing yet."""
        rows = await self._db.fetch(
            "SELECT user_id FROM deleted_accounts WHERE NOT content_removed "
            "ORDER BY deleted_at LIMIT $1",
            limit,
        )
        return [int(row["user_id"]) for row in rows]

    async def content_removed(self, user_id: int) -> None:
        await self._db.execute(
            "UPDATE deleted_accounts SET content_removed = true WHERE user_id = $1", user_id
        )

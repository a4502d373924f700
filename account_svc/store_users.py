"""Users, credentials and profiles in PostgreSQL, the record (tables in
``migrations/001_accounts.sql``), with the Redis :class:`UserCache` in front of reads of
public fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from account_svc.models import CreateResult, UserRecord
from account_svc.store_cache import UserCache
from feedchat_runtime.postgres import Database

_SELECT_PUBLIC = """
SELECT u.user_id, u.username, p.display_name, p.bio, u.created_ms
FROM users u JOIN profiles p USING (user_id)
"""

PROFILE_COLUMNS = frozenset({"display_name", "bio"})

_HELD = """
SELECT 1 FROM deleted_accounts WHERE username = $1 AND username_free_at > now() LIMIT 1
"""


class _Held(Exception):
    """Rolls a sign-up back: its username is held by a deleted account."""


def _record(row: asyncpg.Record, password_hash: str = "") -> UserRecord:
    return UserRecord(
        row["user_id"],
        row["username"],
        row["display_name"],
        row["bio"],
        row["created_ms"],
        password_hash,
    )


class UserStore:
    """The user tables, read through the cache where only public fields are needed."""

    def __init__(self, db: Database, cache: UserCache) -> None:
        self._db = db
        self._cache = cache

    async def create(self, record: UserRecord) -> CreateResult:
        """Insert a user with its credential and profile in one transaction; "taken" when
        the (case-folded) username is, "held" while a deleted account still holds it."""
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO users (user_id, username, created_ms) VALUES ($1, $2, $3)",
                    record.user_id,
                    record.username,
                    record.created_ms,
                )
                # After the insert: an insert racing the name's deletion waited on the
                # unique index, so this statement sees the hold the deletion committed.
                if await conn.fetchval(_HELD, record.username):
                    raise _Held
                await conn.execute(
                    "INSERT INTO credentials (user_id, password_hash) VALUES ($1, $2)",
                    record.user_id,
                    record.password_hash,
                )
                await conn.execute(
                    "INSERT INTO profiles (user_id, display_name, bio) VALUES ($1, $2, $3)",
                    record.user_id,
                    record.display_name,
                    record.bio,
                )
        except _Held:
            return "held"
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "users_username_folded":
                return "taken"
            raise
        return "created"

    async def id_for(self, username: str) -> int | None:
        """The id owning a (lowercase) username."""
        user_id: int | None = await self._db.fetchval(
            "SELECT user_id FROM users WHERE lower(username) = $1", username
        )
        return user_id

    async def with_password(self, user_id: int) -> UserRecord | None:
        """The full record, password hash included (login), never from the cache."""
        row = await self._db.fetchrow(
            """
            SELECT u.user_id, u.username, p.display_name, p.bio, u.created_ms,
                   c.password_hash
            FROM users u JOIN profiles p USING (user_id) JOIN credentials c USING (user_id)
            WHERE u.user_id = $1
            """,
            user_id,
        )
        return None if row is None else _record(row, row["password_hash"])

    async def get_many(self, user_ids: Sequence[int]) -> list[UserRecord | None]:
        """Public fields of many users, None where unknown: the cache first, PostgreSQL
        for the misses (which then fill the cache)."""
        found = await self._cache.get_many(user_ids)
        missing = [uid for uid, record in zip(user_ids, found, strict=True) if record is None]
        if not missing:
            return found
        rows = await self._db.fetch(_SELECT_PUBLIC + "WHERE u.user_id = ANY($1::bigint[])", missing)
        loaded = {row["user_id"]: _record(row) for row in rows}
        await self._cache.put_many(list(loaded.values()))
        return [record or loaded.get(uid) for uid, record in zip(user_ids, found, strict=True)]

    async def update_profile(self, user_id: int, fields: Mapping[str, str]) -> bool:
        """Set profile fields of an existing user; False if there is no such user."""
        unknown = set(fields) - PROFILE_COLUMNS
        assert not unknown, f"not profile columns: {unknown}"
        names = sorted(fields)
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
        query = (
            f"UPDATE profiles SET {sets} WHERE user_id = $1"
            if names
            else "SELECT 1 FROM profiles WHERE user_id = $1"
        )
        status = await self._db.execute(query, user_id, *(fields[n] for n in names))
        await self._cache.drop(user_id)
        return not status.endswith(" 0")

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._db.execute(
            "UPDATE credentials SET password_hash = $2 WHERE user_id = $1",
            user_id,
            password_hash,
        )

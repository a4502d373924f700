"""Channels and membership in PostgreSQL, the record (``migrations/001_channels.sql``).

Adding members locks the channel's row, so concurrent additions cannot push a group past
its member limit. Redis keeps a copy of each member set for the send path
(:meth:`chat_svc.store.ChatStore.store_message` checks membership in its script); the
domain writes here first, then updates that copy, and the copy is refilled from here
when it is missing (a wiped or restarted Redis).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from chat_svc.model import DIRECT, GROUP, ChannelInfo
from feedchat_runtime.errors import FailedPrecondition, NotFound
from feedchat_runtime.postgres import Database


def _ids(channel_ids: Sequence[int]) -> list[Decimal]:
    return [Decimal(c) for c in channel_ids]


class ChannelRecords:
    """The channels and channel_members tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        channel_id: int,
        kind: str,
        name: str,
        owner_id: int,
        created_ms: int,
        members: Sequence[int],
    ) -> None:
        """Create a channel with its members; an existing direct channel stays as it is
        (opening it again is idempotent: its id derives from its two members)."""
        async with self._db.transaction() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO channels (channel_id, kind, name, owner_id, created_ms) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel_id) DO NOTHING "
                "RETURNING true",
                Decimal(channel_id),
                kind,
                name,
                owner_id,
                created_ms,
            )
            if inserted or kind == DIRECT:
                await conn.executemany(
                    "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    [(Decimal(channel_id), m) for m in members],
                )

    async def add_members(self, channel_id: int, user_ids: Sequence[int], limit: int) -> int:
        """Add users to a group within ``limit``; how many were new."""
        async with self._db.transaction() as conn:
            kind = await conn.fetchval(
                "SELECT kind FROM channels WHERE channel_id = $1 FOR UPDATE", Decimal(channel_id)
            )
            if kind is None:
                raise NotFound("no such channel", reason="CHANNEL_NOT_FOUND")
            if kind != GROUP:
                raise FailedPrecondition("direct channels have fixed members", reason="NOT_A_GROUP")
            rows = await conn.fetch(
                "SELECT user_id FROM channel_members WHERE channel_id = $1", Decimal(channel_id)
            )
            current = {row["user_id"] for row in rows}
            new = [u for u in user_ids if u not in current]
            if len(current) + len(new) > limit:
                raise FailedPrecondition(
                    f"the group would exceed its {limit} member limit",
                    reason="GROUP_FULL",
                    metadata={"member_limit": str(limit), "member_count": str(len(current))},
                )
            await conn.executemany(
                "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)",
                [(Decimal(channel_id), u) for u in new],
            )
            return len(new)

    async def remove_members(self, channel_id: int, user_ids: Sequence[int]) -> None:
        await self._db.execute(
            "DELETE FROM channel_members WHERE channel_id = $1 AND user_id = ANY($2::bigint[])",
            Decimal(channel_id),
            list(user_ids),
        )

    async def members(self, channel_id: int) -> list[int]:
        rows = await self._db.fetch(
            "SELECT user_id FROM channel_members WHERE channel_id = $1 ORDER BY user_id",
            Decimal(channel_id),
        )
        return [row["user_id"] for row in rows]

    async def owner(self, channel_id: int) -> int:
        """The channel's owner (0: a direct channel, or no such channel)."""
        found = await self._db.fetchval(
            "SELECT owner_id FROM channels WHERE channel_id = $1", Decimal(channel_id)
        )
        return int(found or 0)

    async def is_member(self, channel_id: int, user_id: int) -> bool:
        found = await self._db.fetchval(
            "SELECT 1 FROM channel_members WHERE channel_id = $1 AND user_id = $2",
            Decimal(channel_id),
            user_id,
        )
        return found is not None

    async def channels(
        self, channel_ids: Sequence[int], with_members: bool = False
    ) -> dict[int, ChannelInfo]:
        """Existing channels among ``channel_ids`` by id (``last_seq`` left 0: the
        messages, and so the sequence, live in Redis)."""
        rows = await self._db.fetch(
            """
            SELECT c.channel_id, c.kind, c.name, c.owner_id,
                   array_agg(m.user_id ORDER BY m.user_id)
                       FILTER (WHERE m.user_id IS NOT NULL) AS members
            FROM channels c LEFT JOIN channel_members m USING (channel_id)
            WHERE c.channel_id = ANY($1::numeric[])
            GROUP BY c.channel_id
            """,
            _ids(channel_ids),
        )
        return {int(row["channel_id"]): _info(row, with_members) for row in rows}

    async def user_channel_ids(self, user_id: int, after: int | None, count: int) -> list[int]:
        """Up to ``count`` of the user's channel ids greater than ``after``, ascending."""
        rows = await self._db.fetch(
            "SELECT channel_id FROM channel_members WHERE user_id = $1 AND channel_id > $2 "
            "ORDER BY channel_id LIMIT $3",
            user_id,
            Decimal(after or 0),
            count,
        )
        return [int(row["channel_id"]) for row in rows]


def _info(row: asyncpg.Record, with_members: bool) -> ChannelInfo:
    members = tuple(row["members"] or ())
    return ChannelInfo(
        channel_id=int(row["channel_id"]),
        kind=row["kind"],
        name=row["name"],
        owner_id=row["owner_id"],
        member_count=len(members),
        last_seq=0,
        member_ids=members if with_members else (),
    )

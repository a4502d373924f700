"""Channels: deterministic direct channels, groups with a member limit, listing, history."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from chat_svc.model import DIRECT, GROUP, ChannelInfo, StoredMessage
from chat_svc.store import ChatStore
from chat_svc.store_channels import ChannelRecords
from feedchat_runtime.clock import wall_ms
from feedchat_runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from feedchat_runtime.pages import page_size
from feedchat_runtime.snowflake import SnowflakeGenerator
from feedchat_runtime.text import TextRule

MAX_USER_ID = (1 << 63) - 1
MAX_NAME = 100
GROUP_NAME = TextRule("name", MAX_NAME, "GROUP_NAME")
MAX_IDS_PER_CALL = 500
DEFAULT_PAGE = 50
MAX_PAGE = 200
DIRECT_BIT = 1 << 63
MAX_SEQ = (1 << 64) - 1
"""Largest stream id part Redis accepts (a channel seq never gets near it)."""


def direct_channel_id(a: int, b: int) -> int:
    """The 1:1 channel id of two users: the same whichever of them asks; top bit set."""
    low, high = sorted((a, b))
    digest = hashlib.sha256(f"feedchat-direct:{low}:{high}".encode()).digest()
    return DIRECT_BIT | (int.from_bytes(digest[:8], "big") >> 1)


def _user_ids(ids: Sequence[int], field: str) -> list[int]:
    if len(ids) > MAX_IDS_PER_CALL:
        raise InvalidArgument.field(field, f"at most {MAX_IDS_PER_CALL} ids per call")
    for uid in ids:
        if not 0 < uid <= MAX_USER_ID:
            raise InvalidArgument.field(field, "ids must be between 1 and 2^63-1")
    return sorted(set(ids))


class Channels:
    """Channel rules; membership is checked on every history read.

    Channels and membership are recorded in PostgreSQL first (``records``); then the
    Redis copy of the member set that the send path checks is updated (``store``).
    """

    def __init__(
        self, store: ChatStore, records: ChannelRecords, ids: SnowflakeGenerator, max_members: int
    ) -> None:
        self.store = store
        self.records = records
        self.ids = ids
        self.max_members = max_members

    async def _infos(
        self, channel_ids: Sequence[int], with_members: bool = False, reader: int = 0
    ) -> list[ChannelInfo]:
        """Existing channels in input order, with their last sequence numbers from Redis
        (and, with ``reader``, that user's read marker of each)."""
        found = await self.records.channels(channel_ids, with_members)
        present = [cid for cid in channel_ids if cid in found]
        seqs = await self.store.last_seqs(present)
        reads = await self.store.read_seqs(reader, present) if reader else [0] * len(present)
        unread = await self.store.messages_after(present, reads) if reader else [0] * len(present)
        return [
            replace(found[cid], last_seq=seq, read_seq=read, unread=count)
            for cid, seq, read, count in zip(present, seqs, reads, unread, strict=True)
        ]

    async def _info(self, channel_id: int) -> ChannelInfo:
        found = await self._infos([channel_id], with_members=True)
        if not found:
            raise NotFound("no such channel", reason="CHANNEL_NOT_FOUND")
        return found[0]

    async def open_direct(self, caller: int, peer: int) -> ChannelInfo:
        if not 0 < peer <= MAX_USER_ID:
            raise InvalidArgument.field("peer_user_id", "must be between 1 and 2^63-1")
        if peer == caller:
            raise InvalidArgument.field("peer_user_id", "must not be the caller")
        channel_id = direct_channel_id(caller, peer)
        await self.records.create(channel_id, DIRECT, "", 0, wall_ms(), [caller, peer])
        await self.store.cache_channel(channel_id, [caller, peer])
        return await self._info(channel_id)

    async def create_group(self, caller: int, name: str, members: Sequence[int]) -> ChannelInfo:
        GROUP_NAME.check(name)
        everyone = sorted(set(_user_ids(members, "member_ids")) | {caller})
        if len(everyone) > self.max_members:
            raise FailedPrecondition(
                f"a group has at most {self.max_members} members",
                reason="GROUP_FULL",
                metadata={"member_limit": str(self.max_members)},
            )
        channel_id = self.ids.next_id()
        await self.records.create(channel_id, GROUP, name, caller, wall_ms(), everyone)
        await self.store.cache_channel(channel_id, everyone)
        return await self._info(channel_id)

    async def _require_group_member(self, caller: int, channel_id: int) -> ChannelInfo:
        info = await self._info(channel_id)
        if caller not in info.member_ids:
            raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
        if info.kind != GROUP:
            raise FailedPrecondition("direct channels have fixed members", reason="NOT_A_GROUP")
        return info

    async def add_members(
        self, caller: int, channel_id: int, user_ids: Sequence[int]
    ) -> ChannelInfo:
        ids = _user_ids(user_ids, "user_ids")
        if not ids:
            raise InvalidArgument.field("user_ids", "must name at least one user")
        await self._require_group_member(caller, channel_id)
        await self.records.add_members(channel_id, ids, self.max_members)
        await self.store.cache_members(channel_id, ids, add=True)
        return await self._info(channel_id)

    async def remove_members(
        self, caller: int, channel_id: int, user_ids: Sequence[int]
    ) -> ChannelInfo:
        ids = _user_ids(user_ids, "user_ids")
        if not ids:
            raise InvalidArgument.field("user_ids", "must name at least one user")
        info = await self._require_group_member(caller, channel_id)
        if caller != info.owner_id and ids != [caller]:
            raise PermissionDenied(
                "only the group's owner may remove others", reason="NOT_GROUP_OWNER"
            )
        await self.records.remove_members(channel_id, ids)
        await self.store.cache_members(channel_id, ids, add=False)
        return await self._info(channel_id)

    async def list_channels(
        self, caller: int, size: int, after: int | None
    ) -> tuple[list[ChannelInfo], int | None]:
        """A page of the caller's channels after channel id ``after``, and where the next
        page starts (None: this was the last)."""
        count = page_size(size, DEFAULT_PAGE, MAX_PAGE)
        ids = await self.records.user_channel_ids(caller, after, count + 1)
        more = len(ids) > count
        ids = ids[:count]
        infos = await self._infos(ids, reader=caller)
        return infos, (ids[-1] if more and ids else None)

    async def history(
        self, caller: int, channel_id: int, size: int, before: int | None
    ) -> tuple[list[StoredMessage], int | None]:
        """A page of messages older than seq ``before`` (newest first, events applied:
        edited text, tombstones, reaction counts), and where the next page starts (None:
        this was the last). A page may hold fewer than ``size`` messages while more follow
        (channel events take seqs too)."""
        count = page_size(size, DEFAULT_PAGE, MAX_PAGE)
        if not await self.records.is_member(channel_id, caller):
            raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
        return await self.store.history_page(channel_id, before, count, reader=caller)

"""The chat store: the only module that talks to Redis (channels and membership are
recorded in PostgreSQL by :mod:`chat_svc.store_channels`).

Key families (hash tags keep each channel's keys in one slot, and each user's):

- ``chat:chan:{c:<id>}:members``   set of member user ids: a copy of the record's
                                   (PostgreSQL, chat_svc.store_channels) for the send
                                   script, refilled from it when missing
- ``chat:chan:{c:<id>}:seq``       counter: last per-channel sequence number
- ``chat:chan:{c:<id>}:hist``      stream of messages, entry id ``<seq>-0`` (exact paging)
- ``chat:inbox:{u:<id>}``          stream: the user's inbox, one entry per message received
- ``chat:dedup:{u:<id>}:<cmid>``   hash: the send's digest and ids (expires after dedup_ttl)
- ``chat:rate:{u:<id>}``           hash: the user's send token bucket
- ``chat:cursor:{u:<id>}``         hash: device id -> last acked inbox cursor
- ``chat:read:{u:<id>}``           hash: channel id -> highest seq read
- ``chat:chan:{c:<id>}:stats:<day>`` hash: message counts per day, hour and minute
                                   (chat_svc.store_stats; written by the send script)
- ``notify:queue``                 stream consumed by notify_svc (see NOTIFY_QUEUE)

Snowflake ids (> 2^53) are never sorted-set scores: history is ordered by the dense
sequence (stream ids ``<seq>-0``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from chat_svc import scripts
from chat_svc.batching import GroupCommit
from chat_svc.model import (
    DIRECT,
    GROUP,
    ZERO_CURSOR,
    InboxEntry,
    SendOutcome,
    StoredMessage,
)
from chat_svc.store_stats import chan_stats_key, day_of
from feedchat_runtime import snowflake
from feedchat_runtime.errors import (
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
)

NOTIFY_QUEUE = "notify:queue"
"""Stream notify_svc consumes. One entry per offline recipient of a message::

    XADD notify:queue MAXLEN ~ 1000000 * kind chat_message user_id <recipient>
        channel_id <id> message_id <snowflake> sender_id <id>
        preview <first 140 chars of text> created_ms <ms>

All values are decimal strings / UTF-8 text.
"""
NOTIFY_QUEUE_CAP = 1_000_000
NOTIFY_PREVIEW_CHARS = 140


def chan_members_key(channel_id: int) -> str:
    return f"chat:chan:{{c:{channel_id}}}:members"


def chan_seq_key(channel_id: int) -> str:
    return f"chat:chan:{{c:{channel_id}}}:seq"


def chan_history_key(channel_id: int) -> str:
    return f"chat:chan:{{c:{channel_id}}}:hist"


def inbox_key(user_id: int) -> str:
    return f"chat:inbox:{{u:{user_id}}}"


def dedup_key(user_id: int, client_msg_id: str) -> str:
    return f"chat:dedup:{{u:{user_id}}}:{client_msg_id}"


def rate_key(user_id: int) -> str:
    return f"chat:rate:{{u:{user_id}}}"


def cursor_key(user_id: int) -> str:
    return f"chat:cursor:{{u:{user_id}}}"


def read_key(user_id: int) -> str:
    return f"chat:read:{{u:{user_id}}}"


def content_digest(channel_id: int, text: str) -> str:
    return hashlib.sha256(f"{channel_id}\n{text}".encode()).hexdigest()


_SendCall = tuple[list[str], list[str | int | float]]
"""Keys and arguments of one message in SEND_MANY."""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _message(fields: Mapping[str, str], channel_id: int, seq: int, cursor: str) -> StoredMessage:
    return StoredMessage(
        message_id=int(fields["message_id"]),
        channel_id=channel_id,
        seq=seq,
        sender_id=int(fields["sender_id"]),
        text=fields["text"],
        client_msg_id=fields["client_msg_id"],
        created_ms=int(fields["created_ms"]),
        inbox_cursor=cursor,
    )


class ChatStore:
    """Redis access for chat: one method per operation, scripts where atomicity matters."""

    def __init__(
        self,
        redis: aioredis.Redis,
        inbox_cap: int = 10_000,
        history_cap: int = 100_000,
        dedup_ttl: int = 86_400,
        send_batch: int = 128,
        stats_ttl: int = 90 * 86_400,
        load_members: Callable[[int], Awaitable[Sequence[int]]] | None = None,
    ) -> None:
        """``load_members`` reads a channel's members from the record (to refill the
        cached set after Redis lost it)."""
        self.redis = redis
        self.inbox_cap = inbox_cap
        self.history_cap = history_cap
        self.dedup_ttl = dedup_ttl
        self.stats_ttl = stats_ttl
        self._send_many = redis.register_script(scripts.SEND_MANY)
        self._sends: GroupCommit[_SendCall, list[str]] = GroupCommit(
            self._run_sends, max_batch=send_batch
        )
        self._cache_members = redis.register_script(scripts.CACHE_MEMBERS)
        self._load_members = load_members
        self._notifications: GroupCommit[tuple[StoredMessage, list[int]], None] = GroupCommit(
            self._run_notifications, max_batch=256
        )
        self._set_cursor = redis.register_script(scripts.SET_CURSOR)
        self._set_read = redis.register_script(scripts.SET_READ)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- messages ---------------------------------------------------------------------

    async def _run_sends(self, calls: list[_SendCall]) -> list[list[str] | BaseException]:
        """One SEND_MANY for sends that arrived together (see chat_svc.batching)."""
        keys: list[str] = []
        args: list[str | int | float] = [len(calls)]
        for k, a in calls:
            keys.extend(k)
            args.extend(a)
        replies = await self._send_many(keys=keys, args=args)
        out: list[list[str] | BaseException] = []
        for raw in replies:
            reply = [_s(x) for x in raw]
            out.append(ResponseError(reply[1]) if reply[0] == "error" else reply)
        return out

    async def store_message(
        self,
        *,
        sender_id: int,
        channel_id: int,
        message_id: int,
        client_msg_id: str,
        text: str,
        created_ms: int,
        rate: float,
        burst: int,
    ) -> SendOutcome:
        """Persist a message to the channel and every current member's inbox, atomically.

        Raises AlreadyExists (client_msg_id reused with other content), ResourceExhausted
        (rate limit, with retry_after), PermissionDenied (sender not a member).
        """
        id_ms = snowflake.timestamp_ms(message_id)
        keys = [
            dedup_key(sender_id, client_msg_id),
            rate_key(sender_id),
            chan_members_key(channel_id),
            chan_seq_key(channel_id),
            chan_history_key(channel_id),
            read_key(sender_id),
            chan_stats_key(channel_id, day_of(id_ms)),
        ]
        args: list[str | int | float] = [
            sender_id,
            content_digest(channel_id, text),
            message_id,
            channel_id,
            text,
            client_msg_id,
            created_ms,
            self.inbox_cap,
            self.history_cap,
            self.dedup_ttl,
            repr(float(rate)),
            burst,
            id_ms,
            self.stats_ttl,
        ]
        reply = await self._sends.call((keys, args))
        if reply[0] == "not_member" and await self._refill_members(channel_id):
            reply = await self._sends.call((keys, args))
        status = reply[0]
        if status == "conflict":
            raise AlreadyExists(
                "client_msg_id was already used for a different message",
                reason="CLIENT_MSG_ID_REUSED",
            )
        if status == "rate":
            raise ResourceExhausted(
                "sending too fast; slow down",
                reason="RATE_LIMITED",
                retry_after=int(reply[1]) / 1000,
            )
        if status == "not_member":
            raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
        if status == "dup":
            original = StoredMessage(
                message_id=int(reply[1]),
                channel_id=channel_id,
                seq=int(reply[2]),
                sender_id=sender_id,
                text=text,
                client_msg_id=client_msg_id,
                created_ms=int(reply[3]),
            )
            return SendOutcome(original, duplicate=True)
        seq = int(reply[1])
        base = StoredMessage(
            message_id, channel_id, seq, sender_id, text, client_msg_id, created_ms
        )
        entries = []
        for i in range(2, len(reply), 3):
            uid, prev, cursor = int(reply[i]), reply[i + 1], reply[i + 2]
            entries.append(InboxEntry(uid, _with_cursor(base, cursor), prev))
        return SendOutcome(base, duplicate=False, entries=entries)

    async def read_inbox(self, user_id: int, after: str, count: int) -> list[StoredMessage]:
        """Up to ``count`` inbox entries strictly after cursor ``after``, oldest first."""
        rows: Any = await self.redis.xrange(
            inbox_key(user_id), min=f"({after}", max="+", count=count
        )
        return [_inbox_message(_s(entry_id), _fields(raw)) for entry_id, raw in rows]

    async def inbox_last(self, user_id: int) -> str:
        """The cursor of the newest inbox entry (``0-0`` for an empty inbox)."""
        rows: Any = await self.redis.xrevrange(inbox_key(user_id), max="+", min="-", count=1)
        return _s(rows[0][0]) if rows else ZERO_CURSOR

    async def read_inbox_range(self, user_id: int, after: str, upto: str) -> list[StoredMessage]:
        """Inbox entries in (after, upto], oldest first (a gap a live push revealed)."""
        rows: Any = await self.redis.xrange(inbox_key(user_id), min=f"({after}", max=upto)
        return [_inbox_message(_s(entry_id), _fields(raw)) for entry_id, raw in rows]

    async def history(
        self, channel_id: int, before_seq: int | None, count: int
    ) -> list[StoredMessage]:
        """Up to ``count`` messages with seq < before_seq (or the newest), newest first."""
        upper = "+" if before_seq is None else f"({before_seq}-0"
        rows: Any = await self.redis.xrevrange(
            chan_history_key(channel_id), max=upper, min="-", count=count
        )
        out = []
        for entry_id, raw in rows:
            seq = int(_s(entry_id).split("-", 1)[0])
            out.append(_message(_fields(raw), channel_id, seq, ""))
        return out

    # -- cursors, reads, notifications -------------------------------------------------

    async def device_cursor(self, user_id: int, device_id: str) -> str | None:
        raw = await self.redis.hget(cursor_key(user_id), device_id)
        return None if raw is None else _s(raw)

    async def save_device_cursor(self, user_id: int, device_id: str, cursor: str) -> None:
        ms, _, seq = cursor.partition("-")
        await self._set_cursor(keys=[cursor_key(user_id)], args=[device_id, ms, seq])

    async def save_read(self, user_id: int, channel_id: int, seq: int) -> tuple[bool, int]:
        """Move the read marker forward, clamped to the channel's last seq (SET_READ);
        (whether it moved, the marker now)."""
        last = await self.redis.get(chan_seq_key(channel_id))
        moved, marker = await self._set_read(
            keys=[read_key(user_id)], args=[channel_id, seq, int(_s(last)) if last else 0]
        )
        return bool(int(moved)), int(_s(marker))

    async def read_seqs(self, user_id: int, channel_ids: Sequence[int]) -> list[int]:
        """The user's read marker of each channel (0 where none), in input order."""
        if not channel_ids:
            return []
        found = await self.redis.hmget(read_key(user_id), [str(c) for c in channel_ids])
        return [int(_s(v)) if v is not None else 0 for v in found]

    async def enqueue_notifications(self, message: StoredMessage, user_ids: Iterable[int]) -> None:
        """Hand offline recipients to notify_svc (the NOTIFY_QUEUE contract).

        Coalesced like sends: when many pushes come back "offline" at once (a restarted
        server answering a backlog of retries), they share a few pipelines instead of
        taking one pooled connection each.
        """
        await self._notifications.call((message, list(user_ids)))

    async def _run_notifications(
        self, items: list[tuple[StoredMessage, list[int]]]
    ) -> list[None | BaseException]:
        pipe = self.redis.pipeline(transaction=False)
        for message, user_ids in items:
            for uid in user_ids:
                pipe.xadd(
                    NOTIFY_QUEUE,
                    {
                        "kind": "chat_message",
                        "user_id": str(uid),
                        "channel_id": str(message.channel_id),
                        "message_id": str(message.message_id),
                        "sender_id": str(message.sender_id),
                        "preview": message.text[:NOTIFY_PREVIEW_CHARS],
                        "created_ms": str(message.created_ms),
                    },
                    maxlen=NOTIFY_QUEUE_CAP,
                    approximate=True,
                )
        await pipe.execute()
        return [None] * len(items)

    # -- cached member sets (the record is chat_svc.store_channels) ---------------------

    async def cache_members(self, channel_id: int, user_ids: Sequence[int], add: bool) -> None:
        """Keep the cached member set in step after the record changed. Adding to a set
        that is not cached would make a partial one: it is left to the next refill."""
        if not user_ids:
            return
        key = chan_members_key(channel_id)
        if add:
            await self._cache_members(keys=[key], args=[1, *(str(u) for u in user_ids)])
        else:
            await self.redis.srem(key, *[str(u) for u in user_ids])

    async def cache_channel(self, channel_id: int, user_ids: Sequence[int]) -> None:
        """Cache a new (or reopened) channel's whole member set, unless it is cached."""
        await self._cache_members(
            keys=[chan_members_key(channel_id)], args=[0, *(str(u) for u in user_ids)]
        )

    async def _refill_members(self, channel_id: int) -> bool:
        """Refill a channel's member set from the record when it is missing from Redis;
        True when it was filled."""
        key = chan_members_key(channel_id)
        if self._load_members is None or await self.redis.exists(key):
            return False
        members = await self._load_members(channel_id)
        if not members:
            return False
        return bool(await self._cache_members(keys=[key], args=[0, *(str(m) for m in members)]))

    async def members(self, channel_id: int) -> list[int]:
        found = await self.redis.smembers(chan_members_key(channel_id))
        if not found and await self._refill_members(channel_id):
            found = await self.redis.smembers(chan_members_key(channel_id))
        return sorted(int(_s(m)) for m in found)

    async def last_seqs(self, channel_ids: Sequence[int]) -> list[int]:
        """Each channel's last message sequence number (0 before its first message)."""
        if not channel_ids:
            return []
        found = await self.redis.mget([chan_seq_key(c) for c in channel_ids])
        return [int(_s(v)) if v is not None else 0 for v in found]


def _with_cursor(message: StoredMessage, cursor: str) -> StoredMessage:
    return StoredMessage(
        message.message_id,
        message.channel_id,
        message.seq,
        message.sender_id,
        message.text,
        message.client_msg_id,
        message.created_ms,
        cursor,
    )


def _inbox_message(entry_id: str, fields: Mapping[str, str]) -> StoredMessage:
    return _message(fields, int(fields["channel_id"]), int(fields["seq"]), entry_id)


__all__ = ["ChatStore", "NOTIFY_QUEUE", "DIRECT", "GROUP"]

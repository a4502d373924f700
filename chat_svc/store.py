"""The chat store: the only module that talks to Redis (channels and membership are
recorded in PostgreSQL by :mod:`chat_svc.store_channels`). Key families are in
:mod:`chat_svc.keys`, scripts in :mod:`chat_svc.scripts`; every script call touches one
hash slot on a cluster (on one Redis, one call of a ``_MANY`` script may take the keys of
many slots), so the same code runs on one Redis and on a Redis Cluster.

A send is stored in two steps (see :mod:`chat_svc.scripts`):

1. :meth:`ChatStore.store_message` -- the channel step, one script in the channel
   bucket's slot (group commit: sends that arrive together share a script call per
   bucket slot, per node on one Redis, and one pipeline). It writes a pending-fanout
   record naming the recipients.
   With ``replica_acks`` it is confirmed by ``WAIT`` on that node before it returns.
2. :meth:`ChatStore.fan_out` -- one ``APPEND_MANY`` per inbox slot on a cluster (per
   node on one Redis; pipelined: one round trip per node), idempotent on the message id;
   then the pending record is removed (with the next pipeline, see
   :mod:`chat_svc.store_fanouts`). :meth:`ChatStore.claim_fanouts` hands records nobody
   finished (their chat server died, an append failed) to another chat server, which
   fans them out again (one claim script call per bucket slot, per node on one Redis).

Snowflake ids (> 2^53) are never sorted-set scores: history is ordered by the dense
sequence (stream ids ``<seq>-0``); the inbox id index scores entries by their ms.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import ResponseError

from chat_svc import scripts
from chat_svc.batching import GroupCommit
from chat_svc.keys import (
    CHANNEL_BUCKETS,
    bucket,
    chan_history_key,
    chan_ids_key,
    chan_members_key,
    chan_seq_key,
    chan_state_key,
    chan_stats_key,
    cursor_key,
    dedup_key,
    fanout_due_key,
    fanout_member,
    fanout_records_key,
    inbox_ids_key,
    inbox_key,
    rate_key,
    read_key,
)
from chat_svc.model import (
    DIRECT,
    GROUP,
    MESSAGE,
    ZERO_CURSOR,
    EventLimits,
    InboxEntry,
    SendOutcome,
    StoredMessage,
)
from chat_svc.store_fanouts import FinishedFanouts
from chat_svc.store_history import entry_fields, history_page, message_of
from chat_svc.store_stats import day_of
from feedchat_runtime import notify_queue, snowflake
from feedchat_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    FeedchatError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient, node_name, slot_groups
from feedchat_runtime.replicas import REASON as REPLICA_ACK_TIMEOUT
from feedchat_runtime.replicas import ReplicaAcks
from feedchat_runtime.replies import fields as _fields
from feedchat_runtime.replies import text as _s

INBOX_IDS_SLACK = 1000
"""Message ids remembered per inbox beyond ``--inbox-cap``: the index covers every entry
the inbox holds (MAXLEN ~ trims whole nodes, so the stream can run a little over its cap),
so a delete finds and removes each one, and a retried append is recognised (and skipped)
while fewer than that many messages reached the inbox since its first append."""
NO_REPLICA_ACKS = ReplicaAcks(0, 500)
"""Writes count as soon as the primary has them (``--replica-acks 0``)."""
DEFAULT_LIMITS = EventLimits()
"""The default bounds of channel events."""
CLAIM_BATCH = 100
"""Most pending-fanout records taken from one bucket per claim."""
SEND_CALL_MAX = 64
"""Most sends in one SEND_MANY call (a group commit's sends on one node go together)."""
CLAIM_CALL_BUCKETS = 32
"""Most buckets in one claim script call (bounds how long one call holds Redis: up to
this many times CLAIM_BATCH records)."""
APPEND_CALL_MAX = 256
"""Most appends in one APPEND_MANY call (bounds how long one call holds Redis: a message
to a large group takes one call per this many members)."""


def content_digest(
    channel_id: int, text: str, kind: str = MESSAGE, target_id: int = 0, emoji: str = ""
) -> str:
    """What a client_msg_id is bound to: a retry must carry the same content (a plain
    message's digest is the one stored before events existed)."""
    extra = f"\n{kind}\n{target_id}\n{emoji}" if kind or target_id else ""
    return hashlib.sha256(f"{channel_id}\n{text}{extra}".encode()).hexdigest()


def _refusal(status: str, limits: EventLimits) -> FeedchatError | None:
    """The error for an event's (or a reply's) refusal by SEND_MANY; None for others."""
    if status == "not_found":
        return NotFound("no such message in this channel", reason="MESSAGE_NOT_FOUND")
    if status == "reply_not_found":
        return NotFound(
            "reply_to names no message of this channel", reason="REPLY_TARGET_NOT_FOUND"
        )
    if status == "deleted":
        return FailedPrecondition("the message was deleted", reason="MESSAGE_DELETED")
    if status == "not_sender":
        return PermissionDenied(
            "only the message's sender (or, deleting, the group's owner) may do this",
            reason="NOT_MESSAGE_SENDER",
        )
    if status == "window":
        window = limits.edit_window_ms // 1000
        return FailedPrecondition(
            f"messages can only be edited for {window} s after they were sent",
            reason="EDIT_WINDOW_CLOSED",
            metadata={"edit_window_s": str(window)},
        )
    if status == "reacted":
        return AlreadyExists("you already reacted with this emoji", reason="ALREADY_REACTED")
    if status == "no_reaction":
        return NotFound("you have no such reaction on this message", reason="REACTION_NOT_FOUND")
    if status == "reaction_limit":
        return FailedPrecondition(
            f"a message has at most {limits.max_reactions} distinct reactions",
            reason="TOO_MANY_REACTIONS",
            metadata={"limit": str(limits.max_reactions)},
        )
    if status == "edit_limit":
        return FailedPrecondition(
            f"a message can be edited at most {limits.max_edits} times",
            reason="TOO_MANY_EDITS",
            metadata={"limit": str(limits.max_edits)},
        )
    if status == "user_limit":
        return FailedPrecondition(
            f"one user may add at most {limits.max_user_reactions} reactions to a message",
            reason="TOO_MANY_USER_REACTIONS",
            metadata={"limit": str(limits.max_user_reactions)},
        )
    return None


logger = logging.getLogger(__name__)


_SendCall = tuple[int, list[str], list[str | int | float]]
"""Bucket, keys and arguments of one message in SEND_MANY."""
_Fanout = tuple[StoredMessage, Sequence[int]]
"""A stored message and its recipients."""
_AckCall = tuple[int, str, str, str, int]
"""A device's ack: user, device, previous cursor, new cursor, most entries to read back."""


@dataclass(frozen=True)
class Fanned:
    """What one fanout appended: the inbox entries (new ones, and ones an earlier attempt
    had made), and the first error if some appends failed (the pending record then stays
    for a claim)."""

    entries: list[InboxEntry]
    error: BaseException | None = None


def not_replicated(replication: ReplicaAcks) -> Unavailable:
    return Unavailable(
        f"the message is stored but no replica confirmed it within {replication.wait_ms} ms; "
        "retry with the same client_msg_id",
        reason=REPLICA_ACK_TIMEOUT,
        retry_after=max(0.1, replication.wait_ms / 1000),
    )


class ChatStore:
    """Redis access for chat: one method per operation, scripts where atomicity matters."""

    def __init__(
        self,
        redis: RedisClient,
        inbox_cap: int = 10_000,
        history_cap: int = 100_000,
        dedup_ttl: int = 86_400,
        send_batch: int = 128,
        stats_ttl: int = 90 * 86_400,
        load_members: Callable[[int], Awaitable[Sequence[int]]] | None = None,
        replication: ReplicaAcks = NO_REPLICA_ACKS,
        claim_ms: int = 5_000,
        limits: EventLimits = DEFAULT_LIMITS,
    ) -> None:
        """``load_members`` reads a channel's members from the record (to refill the
        cached set after Redis lost it); ``claim_ms``: how long after its channel step a
        pending fanout may be taken over by another chat server; ``limits``: the bounds
        of channel events the channel step enforces."""
        self.redis = redis
        self.limits = limits
        self.inbox_cap = inbox_cap
        self.history_cap = history_cap
        self.dedup_ttl = dedup_ttl
        self.stats_ttl = stats_ttl
        self.replication = replication
        self.claim_ms = claim_ms
        self.scripts = LuaScripts(redis, scripts.SOURCES)
        self._sends: GroupCommit[_SendCall, list[str]] = GroupCommit(
            self._run_sends, max_batch=send_batch
        )
        self._fanouts: GroupCommit[_Fanout, Fanned] = GroupCommit(
            self._run_fanouts, max_batch=send_batch
        )
        self._forgets = FinishedFanouts(redis)
        self._acks: GroupCommit[_AckCall, list[StoredMessage]] = GroupCommit(
            self._run_acks, max_batch=256
        )
        self._load_members = load_members
        self._notifications: GroupCommit[tuple[StoredMessage, list[int]], None] = GroupCommit(
            self._run_notifications, max_batch=256
        )

    async def close(self) -> None:
        """Write what waits to go in the background (the record removals of finished
        fanouts); call after the last fanout and before Redis closes."""
        await self._forgets.close()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- replica confirmation ----------------------------------------------------------

    async def _run_confirmed(
        self, queue: Callable[[Any], None], written: Callable[[], Iterable[str]]
    ) -> tuple[list[Any], Callable[[str], bool]]:
        """Run what ``queue`` puts on a pipeline, followed (with replication on) by a WAIT
        per node holding any of the ``written`` keys; (the replies of ``queue``'s
        commands, whether a key's node confirmed them)."""
        if self.replication.replicas <= 0:
            return await self.scripts.pipeline(queue), lambda key: True
        await self.replication.ready(self.redis)
        nodes: list[str] = []

        def queue_and_wait(pipe: Any) -> None:
            nonlocal nodes
            queue(pipe)
            nodes = self.replication.queue_waits(pipe, self.redis, written())

        replies = await self.scripts.pipeline(queue_and_wait)
        split = len(replies) - len(nodes)
        confirmed = self.replication.confirmed(nodes, replies[split:])
        return replies[:split], lambda key: node_name(self.redis, key) in confirmed

    # -- messages: the channel step ----------------------------------------------------

    async def _run_sends(self, calls: list[_SendCall]) -> list[list[str] | BaseException]:
        """The sends that arrived together: one SEND_MANY per channel bucket slot on a
        cluster (per node on one Redis), all in one pipeline (and a WAIT per node with
        replication on), which also carries the removals of finished fanouts."""
        groups = _chunks(slot_groups(self.redis, [keys[0] for _, keys, _ in calls]), SEND_CALL_MAX)
        forgets = 0

        def queue(pipe: Any) -> None:
            nonlocal forgets
            forgets = self._forgets.queue(pipe)
            for indexes in groups:
                keys: list[str] = []
                args: list[str | int | float] = [len(indexes), self.claim_ms]
                for i in indexes:
                    keys.extend(calls[i][1])
                    args.extend(calls[i][2])
                self.scripts.queue(pipe, "send_many", keys, args)

        replies, confirmed = await self._run_confirmed(
            queue, lambda: (calls[ix[0]][1][0] for ix in groups)
        )
        replies = self._forgets.taken(replies, forgets)
        out: list[list[str] | BaseException] = [RuntimeError("no reply")] * len(calls)
        for indexes, batch in zip(groups, replies, strict=True):
            for i, raw in zip(indexes, _batch_replies(batch, len(indexes)), strict=True):
                if isinstance(raw, BaseException):
                    out[i] = raw
                    continue
                reply = [_s(x) for x in raw]
                if not confirmed(calls[i][1][0]) and reply[0] in ("ok", "dup"):
                    out[i] = not_replicated(self.replication)
                else:
                    out[i] = reply
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
        kind: str = MESSAGE,
        target_id: int = 0,
        emoji: str = "",
        owner: bool = False,
    ) -> SendOutcome:
        """The channel step of a send: the message (or channel event: ``kind``, on message
        ``target_id``) in its channel's history, with a pending-fanout record of its
        recipients (:meth:`fan_out` delivers it to them). For a message, ``target_id`` is
        the message it replies to (0: none). ``owner``: the sender owns the group (may
        delete others' messages).

        Raises AlreadyExists (client_msg_id reused with other content), ResourceExhausted
        (rate limit, with retry_after), PermissionDenied (sender not a member),
        Unavailable REPLICA_ACK_TIMEOUT (stored, but no replica confirmed it in time), and
        an event's refusals (see :func:`_refusal`).
        """
        id_ms = snowflake.timestamp_ms(message_id)
        keys = [
            dedup_key(channel_id, sender_id, client_msg_id),
            rate_key(channel_id, sender_id),
            chan_members_key(channel_id),
            chan_seq_key(channel_id),
            chan_history_key(channel_id),
            fanout_due_key(bucket(channel_id)),
            fanout_records_key(bucket(channel_id)),
            chan_stats_key(channel_id, day_of(id_ms)),
            chan_ids_key(channel_id),
            chan_state_key(channel_id),
        ]
        limits = self.limits
        args: list[str | int | float] = [
            sender_id,
            content_digest(channel_id, text, kind, target_id, emoji),
            message_id,
            channel_id,
            text,
            client_msg_id,
            created_ms,
            self.history_cap,
            self.dedup_ttl,
            repr(float(rate)),
            burst,
            id_ms,
            self.stats_ttl,
            kind,
            str(target_id),
            emoji,
            limits.edit_window_ms,
            1 if owner else 0,
            limits.max_reactions,
            limits.max_user_reactions,
            self.history_cap,
            limits.max_edits,
        ]
        call = (bucket(channel_id), keys, args)
        reply = await self._sends.call(call)
        if reply[0] == "not_member" and await self._refill_members(channel_id):
            reply = await self._sends.call(call)
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
        refused = _refusal(status, self.limits)
        if refused is not None:
            raise refused
        fields = {
            "message_id": str(message_id),
            "sender_id": str(sender_id),
            "text": text,
            "client_msg_id": client_msg_id,
            "created_ms": str(created_ms),
        }
        duplicate = status == "dup"
        if duplicate:  # the original's ids
            fields.update(message_id=reply[1], created_ms=reply[3])
            reply = ["dup", reply[2], *reply[4:]]
        seq, target_seq, scrub = int(reply[1]), reply[2], reply[3]
        if kind:
            fields.update(kind=kind, target=str(target_id), target_seq=target_seq, emoji=emoji)
            fields.update(scrub=scrub)
        elif target_id:
            fields.update(reply_to=str(target_id), reply_seq=target_seq)
        message = message_of(fields, channel_id, seq, "")
        recipients = tuple(int(u) for u in reply[4:])
        return SendOutcome(message, duplicate=duplicate, recipients=recipients)

    # -- messages: the inbox step ------------------------------------------------------

    def submit_fan_out(
        self, message: StoredMessage, recipients: Sequence[int]
    ) -> asyncio.Future[Fanned]:
        """Append a stored message to its recipients' inboxes (see :meth:`fan_out`),
        coalesced with other fanouts submitted in the same tick."""
        return self._fanouts.submit((message, recipients))

    async def fan_out(self, message: StoredMessage, recipients: Sequence[int]) -> Fanned:
        """Append a stored message to each recipient's inbox once (an inbox that has it
        already keeps its one entry), then remove its pending-fanout record. Each entry
        carries the id of the entry before it. A failed append leaves the record for a
        claimer (see :class:`Fanned`)."""
        return await self.submit_fan_out(message, recipients)

    async def _run_fanouts(self, items: list[_Fanout]) -> list[Fanned | BaseException]:
        """All appends of these fanouts: one APPEND_MANY per inbox slot on a cluster (per
        node on one Redis, at most APPEND_CALL_MAX appends a call), in one pipeline (and a
        WAIT per node with replication on). The records of those that completed are
        removed afterwards, riding on the next pipeline of sends or appends (see
        :class:`~chat_svc.store_fanouts.FinishedFanouts`; not waited for: the entries are
        pushed at once; a removal that fails leaves a record whose claim appends nothing
        new, as appends are idempotent)."""
        appends = [(i, uid) for i, (_, recipients) in enumerate(items) for uid in recipients]
        groups = _chunks(
            slot_groups(self.redis, [inbox_key(u) for _, u in appends]), APPEND_CALL_MAX
        )
        blocks = [_append_block(message) for message, _ in items]
        forgets = 0

        def queue(pipe: Any) -> None:
            nonlocal forgets
            forgets = self._forgets.queue(pipe)
            for group in groups:
                numbers: dict[int, int] = {}
                keys: list[str] = []
                heads: list[str | int] = []
                pairs: list[int] = []
                for at in group:
                    i, uid = appends[at]
                    if i not in numbers:
                        numbers[i] = len(numbers) + 1
                        heads.append(len(blocks[i]))
                        heads.extend(blocks[i])
                    message = items[i][0]
                    # your own messages are read; your own edits and reactions (which
                    # may be of an old message) do not mark the channel read
                    mine = 1 if uid == message.sender_id and message.event is None else 0
                    pairs.extend((numbers[i], mine))
                    keys.extend((inbox_key(uid), inbox_ids_key(uid), read_key(uid)))
                kept = self.inbox_cap + INBOX_IDS_SLACK
                args = [self.inbox_cap, kept, len(numbers), *heads, *pairs]
                self.scripts.queue(pipe, "append_many", keys, args)

        replies, confirmed = await self._run_confirmed(
            queue, lambda: (inbox_key(u) for _, u in appends)
        )
        replies = self._forgets.taken(replies, forgets)
        results: list[Any] = [None] * len(appends)
        for group, reply in zip(groups, replies, strict=True):
            for at, raw in zip(group, _batch_replies(reply, len(group)), strict=True):
                results[at] = raw
        out: list[Fanned | BaseException] = []
        done: dict[int, list[str]] = defaultdict(list)
        position = 0
        for message, recipients in items:
            entries: list[InboxEntry] = []
            failure: BaseException | None = None
            for uid in recipients:
                raw = results[position]
                position += 1
                if isinstance(raw, BaseException):
                    failure = raw
                    continue
                if not confirmed(inbox_key(uid)):
                    failure = not_replicated(self.replication)  # readable, not yet safe
                if _s(raw[0]) != "gone":
                    cursor, prev = _s(raw[2]), _s(raw[1])
                    entries.append(InboxEntry(uid, replace(message, inbox_cursor=cursor), prev))
            if failure is None:
                done[bucket(message.channel_id)].append(
                    fanout_member(message.channel_id, message.seq)
                )
            out.append(Fanned(entries, failure))
        if done:
            self._forgets.add(done)
        return out

    async def claim_fanouts(self, limit: int = CLAIM_BATCH) -> list[_Fanout]:
        """Take over due pending-fanout records of every bucket (their claim time moves
        ahead, so they come back if this server dies too): each message, read back from
        its channel's history, with its recipients. Records whose message is no longer in
        the history (trimmed, or Redis lost it) are dropped."""

        dues = [fanout_due_key(b) for b in range(CHANNEL_BUCKETS)]
        groups = _chunks(slot_groups(self.redis, dues), CLAIM_CALL_BUCKETS)

        def queue_claims(pipe: Any) -> None:
            for group in groups:
                keys = [key for b in group for key in (dues[b], fanout_records_key(b))]
                self.scripts.queue(pipe, "claim", keys, [self.claim_ms, limit])

        # With replication on, only records a replica has are fanned out: a record of a
        # send that could still vanish with its primary (and be stored anew by the
        # client's retry) must not reach an inbox. The others come back at the next claim.
        replies, confirmed = await self._run_confirmed(queue_claims, lambda: dues)
        by_bucket: list[Any] = [None] * CHANNEL_BUCKETS
        for group, reply in zip(groups, replies, strict=True):
            for b, raw in zip(group, _batch_replies(reply, len(group)), strict=True):
                by_bucket[b] = raw
        claimed: list[tuple[int, int, list[int]]] = []
        errors = [r for r in by_bucket if isinstance(r, BaseException)]
        if len(errors) == CHANNEL_BUCKETS:
            raise errors[0]  # Redis is down: the caller logs it
        for b, reply in enumerate(by_bucket):  # a node that is down leaves its buckets for later
            if isinstance(reply, BaseException) or not confirmed(dues[b]):
                continue
            for i in range(0, len(reply), 2):
                name_channel, _, name_seq = _s(reply[i]).partition(":")
                recipients = [int(u) for u in _s(reply[i + 1]).split()]
                claimed.append((int(name_channel), int(name_seq), recipients))
        if not claimed:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, seq, _ in claimed:
                pipe.xrange(chan_history_key(channel), f"{seq}-0", f"{seq}-0")
            rows = await pipe.execute()
        found: list[_Fanout] = []
        lost: dict[int, list[str]] = defaultdict(list)
        for (channel, seq, recipients), row in zip(claimed, rows, strict=True):
            if row:
                found.append((message_of(_fields(row[0][1]), channel, seq, ""), recipients))
            else:
                lost[bucket(channel)].append(fanout_member(channel, seq))
        if lost:
            self._forgets.add(lost)
        return found

    async def pending_fanouts(self) -> int:
        """Pending-fanout records in all buckets (finished ones are removed)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for b in range(CHANNEL_BUCKETS):
                pipe.hlen(fanout_records_key(b))
            return sum(int(n) for n in await pipe.execute())

    # -- reading ------------------------------------------------------------------------

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
        self, channel_id: int, before_seq: int | None, count: int, reader: int = 0
    ) -> list[StoredMessage]:
        """Up to ``count`` messages with seq < before_seq (or the newest), newest first,
        with their events applied (see :meth:`history_page`)."""
        messages, _ = await self.history_page(channel_id, before_seq, count, reader)
        return messages

    async def history_page(
        self, channel_id: int, before_seq: int | None, count: int, reader: int = 0
    ) -> tuple[list[StoredMessage], int | None]:
        """Up to ``count`` messages (not events) with seq < before_seq (or the newest),
        newest first: edited text, tombstones of deleted messages, reaction counts (and
        whether ``reader`` reacted); and the seq the next page starts below (None: the
        oldest retained message is in this page)."""
        return await history_page(self.redis, channel_id, before_seq, count, reader)

    # -- cursors, reads, notifications -------------------------------------------------

    async def device_cursor(self, user_id: int, device_id: str) -> str | None:
        raw = await self.redis.hget(cursor_key(user_id), device_id)
        return None if raw is None else _s(raw)

    async def acknowledge(
        self, user_id: int, device_id: str, after: str, upto: str, count: int
    ) -> list[StoredMessage]:
        """A device acked its inbox up to ``upto``: save that as its cursor (forward only)
        and read back the entries it acked, (after, upto] (at most ``count``, oldest
        first). Acks of the same tick share one pipelined Redis round trip."""
        return await self._acks.call((user_id, device_id, after, upto, count))

    async def _run_acks(self, calls: list[_AckCall]) -> list[list[StoredMessage] | BaseException]:
        def queue(pipe: Any) -> None:
            for user_id, device_id, after, upto, count in calls:
                ms, _, seq = upto.partition("-")
                self.scripts.queue(pipe, "set_cursor", [cursor_key(user_id)], [device_id, ms, seq])
                pipe.execute_command(
                    "XRANGE", inbox_key(user_id), f"({after}", upto, "COUNT", count
                )

        replies = await self.scripts.pipeline(queue)
        out: list[list[StoredMessage] | BaseException] = []
        for i in range(len(calls)):
            saved, rows = replies[2 * i], replies[2 * i + 1]
            failed = saved if isinstance(saved, BaseException) else rows
            if isinstance(failed, BaseException):
                out.append(failed)
            else:
                out.append([_inbox_message(_s(entry), _fields(raw)) for entry, raw in rows])
        return out

    async def save_read(self, user_id: int, channel_id: int, seq: int) -> tuple[bool, int]:
        """Move the read marker forward, clamped to the channel's last seq (SET_READ);
        (whether it moved, the marker now)."""
        last = await self.redis.get(chan_seq_key(channel_id))
        moved, marker = await self.scripts.call(
            "set_read", [read_key(user_id)], [channel_id, seq, int(_s(last)) if last else 0]
        )
        return bool(int(moved)), int(_s(marker))

    async def read_seqs(self, user_id: int, channel_ids: Sequence[int]) -> list[int]:
        """The user's read marker of each channel (0 where none), in input order."""
        if not channel_ids:
            return []
        found = await self.redis.hmget(read_key(user_id), [str(c) for c in channel_ids])
        return [int(_s(v)) if v is not None else 0 for v in found]

    async def enqueue_notifications(self, message: StoredMessage, user_ids: Iterable[int]) -> None:
        """Hand offline recipients to notify_svc (one ``chat_message`` entry each, the
        contract in :mod:`feedchat_runtime.notify_queue`).

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
            notice = notify_queue.Notice(
                kind=notify_queue.NotificationKind.CHAT_MESSAGE,
                channel_id=message.channel_id,
                message_id=message.message_id,
                sender_id=message.sender_id,
                preview=message.text,
                created_ms=message.created_ms,
            )
            notify_queue.enqueue(pipe, notice, user_ids)
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
            await self.scripts.call("cache_members", [key], [1, *(str(u) for u in user_ids)])
        else:
            await self.redis.srem(key, *[str(u) for u in user_ids])

    async def cache_channel(self, channel_id: int, user_ids: Sequence[int]) -> None:
        """Cache a new (or reopened) channel's whole member set, unless it is cached."""
        await self.scripts.call(
            "cache_members", [chan_members_key(channel_id)], [0, *(str(u) for u in user_ids)]
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
        filled = await self.scripts.call("cache_members", [key], [0, *(str(m) for m in members)])
        return bool(filled)

    async def members(self, channel_id: int) -> list[int]:
        found = await self.redis.smembers(chan_members_key(channel_id))
        if not found and await self._refill_members(channel_id):
            found = await self.redis.smembers(chan_members_key(channel_id))
        return sorted(int(_s(m)) for m in found)

    async def messages_after(self, channel_ids: Sequence[int], seqs: Sequence[int]) -> list[int]:
        """How many messages (not edit, delete or reaction events) each channel holds after
        the given seq, among the ids it indexes (the newest ``--history-cap``)."""
        if not channel_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for c, seq in zip(channel_ids, seqs, strict=True):
                pipe.zcount(chan_ids_key(c), f"({seq}", "+inf")
            found = await pipe.execute()
        return [int(n) for n in found]

    async def last_seqs(self, channel_ids: Sequence[int]) -> list[int]:
        """Each channel's last message sequence number (0 before its first message)."""
        if not channel_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in channel_ids:
                pipe.get(chan_seq_key(c))
            found = await pipe.execute()
        return [int(_s(v)) if v is not None else 0 for v in found]


def _chunks(groups: list[list[int]], size: int) -> list[list[int]]:
    """Each group cut into pieces of at most ``size`` (bounds one script call's work)."""
    return [group[at : at + size] for group in groups for at in range(0, len(group), size)]


def _append_block(message: StoredMessage) -> list[str | int]:
    """A message's block of APPEND_MANY arguments (see :data:`chat_svc.scripts.APPEND_MANY`)."""
    fields = entry_fields(message)
    head: list[str | int] = [
        message.channel_id,
        fields.pop("message_id"),
        message.seq,
        fields.pop("sender_id"),
        fields.pop("text"),
        fields.pop("client_msg_id"),
        message.created_ms,
        " ".join(str(i) for i in message.scrub),
    ]
    del fields["created_ms"]
    return [*head, *(item for pair in fields.items() for item in pair)]


def _batch_replies(batch: Any, count: int) -> list[Any]:
    """The per-item replies of one call of a ``_MANY`` script: the call's error repeated
    for each item, and an item's ``{"error", text}`` as a ResponseError."""
    if isinstance(batch, BaseException):
        return [batch] * count
    return [ResponseError(_s(raw[1])) if raw and _s(raw[0]) == "error" else raw for raw in batch]


def _inbox_message(entry_id: str, fields: Mapping[str, str]) -> StoredMessage:
    return message_of(fields, int(fields["channel_id"]), int(fields["seq"]), entry_id)


__all__ = ["ChatStore", "DIRECT", "GROUP", "Fanned"]

"""The only module of notify_svc that talks to Redis.

Key families (one builder each). Every per-user key carries the hash tag ``{<user_id>}``
so the scripts that touch several of them run on one Redis Cluster slot::

    notify:{u}:devices              hash  device_id -> Device JSON
    notify:{u}:mutes                set   muted channel ids (decimal)
    notify:{u}:list                 zset  notification ids, 20-digit zero-padded, score 0
                                          (lexicographic order == numeric order; Snowflake
                                          ids exceed 2^53 so they are never scores)
    notify:{u}:n:<nid>              hash  one notification (fields of Notification)
    notify:{u}:open:<kind>:<chan>   str   nid of the notification that still collapses new
                                          messages of that channel; expires with the window
    notify:{u}:seen:<message_id>    str   "created:<nid>" | "collapsed:<nid>" | "muted:" —
                                          the per-(user, message) processed marker (dedup)
    notify:{u}:pushed:<nid>         hash  device_id -> ms of the 2xx answer (delivered marker)

Queue keys (fixed by the queue contract, shared with chat_svc/feed_svc)::

    notify:queue     stream  jobs; consumer group --consumer-group; entries are deleted
                             once acknowledged
    notify:dead      stream  jobs that failed --max-attempts times (or broke the contract)
    notify:attempts  hash    queue entry id -> delivery attempts so far (survives crashes)
    notify:events    pub/sub channel of created/updated notification events (JSON)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from feedchat_runtime.errors import Unavailable
from feedchat_runtime.ids import pad
from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.notify_queue import NotificationKind
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from feedchat_runtime.streams import ConsumerGroup
from notify_svc import scripts
from notify_svc.models import Device, DeviceKind, Notification

DEAD_KEY = "notify:dead"
ATTEMPTS_KEY = "notify:attempts"
EVENTS_CHANNEL = "notify:events"
APPLY_CALLS = 4
"""Calls of the apply script per job before giving up (the job is then retried)."""
DEAD_MAXLEN = 100_000
"""The dead-letter stream keeps about this many newest entries."""


def _tag(user_id: int) -> str:
    return f"notify:{{{user_id}}}"


def devices_key(user_id: int) -> str:
    return f"{_tag(user_id)}:devices"


def mutes_key(user_id: int) -> str:
    return f"{_tag(user_id)}:mutes"


def list_key(user_id: int) -> str:
    return f"{_tag(user_id)}:list"


def notification_prefix(user_id: int) -> str:
    return f"{_tag(user_id)}:n:"


def notification_key(user_id: int, nid: int) -> str:
    return notification_prefix(user_id) + pad(nid)


def open_prefix(user_id: int) -> str:
    return f"{_tag(user_id)}:open:"


def open_key(user_id: int, kind: NotificationKind, channel_id: int) -> str:
    return f"{open_prefix(user_id)}{kind.value}:{channel_id}"


def seen_key(user_id: int, message_id: int) -> str:
    return f"{_tag(user_id)}:seen:{message_id}"


def pushed_key(user_id: int, nid: int) -> str:
    return f"{_tag(user_id)}:pushed:{pad(nid)}"


@dataclass(frozen=True)
class ApplyResult:
    """What applying a job did: ``created`` / ``collapsed`` into ``nid``, or ``muted``."""

    outcome: str
    nid: int
    fresh: bool


def _notification(nid: int, raw: Mapping[Any, Any]) -> Notification:
    f = {text(k): text(v) for k, v in raw.items()}
    return Notification(
        notification_id=nid,
        kind=NotificationKind(f["kind"]),
        channel_id=int(f["channel_id"]),
        sender_id=int(f["sender_id"]),
        first_message_id=int(f["first_message_id"]),
        last_message_id=int(f["last_message_id"]),
        count=int(f["count"]),
        preview=f["preview"],
        created_ms=int(f["created_ms"]),
        updated_ms=int(f["updated_ms"]),
        read=f["read"] == "1",
    )


def _devices(raw: Mapping[Any, Any]) -> list[Device]:
    found = []
    for device_id, value in raw.items():
        data = json.loads(value)
        found.append(
            Device(text(device_id), DeviceKind(data["kind"]), data["url"], int(data["ms"]))
        )
    return sorted(found, key=lambda d: d.device_id)


class NotifyStore:
    """Redis access for devices, mutes, notifications, and the queue."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self.scripts = LuaScripts(redis, scripts.SOURCES)

    # -- devices and mutes -------------------------------------------------------------

    async def put_device(self, user_id: int, device: Device, limit: int) -> bool:
        value = json.dumps(
            {"kind": device.kind.value, "url": device.webhook_url, "ms": device.registered_ms}
        )
        stored = await self.scripts.call(
            "put_device", [devices_key(user_id)], [device.device_id, value, limit]
        )
        return bool(stored)

    async def delete_device(self, user_id: int, device_id: str) -> bool:
        return bool(await self.redis.hdel(devices_key(user_id), device_id))

    async def devices(self, user_id: int) -> list[Device]:
        return _devices(await self.redis.hgetall(devices_key(user_id)))

    async def mute(self, user_id: int, channel_id: int, limit: int) -> bool:
        return bool(await self.scripts.call("add_mute", [mutes_key(user_id)], [channel_id, limit]))

    async def unmute(self, user_id: int, channel_id: int) -> None:
        await self.redis.srem(mutes_key(user_id), str(channel_id))

    async def muted(self, user_id: int) -> list[int]:
        raw = await self.redis.smembers(mutes_key(user_id))
        return sorted(int(x) for x in raw)

    # -- notifications -----------------------------------------------------------------

    async def apply(
        self,
        job_user: int,
        kind: NotificationKind,
        channel_id: int,
        message_id: int,
        sender_id: int,
        preview: str,
        at_ms: int,
        window_ms: int,
        marker_ttl_ms: int,
        keep: int,
    ) -> ApplyResult:
        """Run the apply script (see ``scripts.APPLY``) for one job.

        The script names the open notification and the ones a full list drops in a
        ``retry`` answer when this call did not declare their keys; the next call declares
        them. Two calls in the usual case (a collapse, or a create on a full list), one
        when neither applies; more only while other jobs of the same user and channel
        change the list in between, up to APPLY_CALLS.
        """
        fixed = [
            seen_key(job_user, message_id),
            mutes_key(job_user),
            open_key(job_user, kind, channel_id),
            list_key(job_user),
            notification_key(job_user, message_id),
        ]
        args = [
            pad(message_id),
            kind.value,
            channel_id,
            sender_id,
            preview,
            at_ms,
            window_ms,
            marker_ttl_ms,
            keep,
        ]
        open_id, drop = "", list[str]()
        prefix = notification_prefix(job_user)
        for _ in range(APPLY_CALLS):
            tail = [prefix + open_id] if open_id else []
            reply = await self.scripts.call(
                "apply",
                [*fixed, *(prefix + nid for nid in drop), *tail],
                [*args, open_id, len(drop), *drop],
            )
            outcome = text(reply[0])
            if outcome == "retry":
                open_id, drop = text(reply[1]), [text(nid) for nid in reply[3:]]
                continue
            nid_text = text(reply[1])
            return ApplyResult(outcome, int(nid_text) if nid_text else 0, bool(int(reply[2])))
        raise Unavailable(
            f"notifications of user {job_user} keep changing; the job is retried",
            reason="STORAGE_CONTENDED",
        )

    async def notification(self, user_id: int, nid: int) -> Notification | None:
        raw = await self.redis.hgetall(notification_key(user_id, nid))
        return _notification(nid, raw) if raw else None

    async def page(
        self, user_id: int, before: int | None, size: int
    ) -> tuple[list[Notification], int | None]:
        """Up to ``size`` notifications older than ``before`` (newest first), and the id
        the next page continues after (None on the last page)."""
        upper = "+" if before is None else "(" + pad(before)
        ids = await self.redis.zrevrangebylex(list_key(user_id), upper, "-", 0, size + 1)
        more = len(ids) > size
        ids = ids[:size]
        async with self.redis.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.hgetall(notification_prefix(user_id) + text(raw_id))
            hashes = await pipe.execute()
        # A notification trimmed between the two reads is skipped, not an error.
        found = [
            _notification(int(text(raw_id)), h) for raw_id, h in zip(ids, hashes, strict=True) if h
        ]
        return found, (int(text(ids[-1])) if more else None)

    async def mark_read(self, user_id: int, nids: Sequence[int]) -> int:
        """Mark ``nids`` read; how many were unread. Their (kind, channel), which never
        change, are read first to name each one's open key."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for nid in nids:
                pipe.hmget(notification_key(user_id, nid), ["kind", "channel_id"])
            rows = await pipe.execute()
        found = [
            (nid, NotificationKind(text(kind)), int(chan))
            for nid, (kind, chan) in zip(nids, rows, strict=True)
            if kind is not None
        ]
        if not found:
            return 0
        marked = await self.scripts.call(
            "mark_read",
            [
                *(notification_key(user_id, nid) for nid, _, _ in found),
                *(open_key(user_id, kind, chan) for _, kind, chan in found),
            ],
            [pad(nid) for nid, _, _ in found],
        )
        return int(marked)

    async def push_state(
        self, user_id: int, nid: int
    ) -> tuple[Notification | None, list[Device], set[str]]:
        """In one round trip: the notification, the user's devices, and the devices that
        already confirmed it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(notification_key(user_id, nid))
            pipe.hgetall(devices_key(user_id))
            pipe.hkeys(pushed_key(user_id, nid))
            raw_note, raw_devices, raw_pushed = await pipe.execute()
        note = _notification(nid, raw_note) if raw_note else None
        return note, _devices(raw_devices), {text(x) for x in raw_pushed}

    async def mark_pushed(
        self, user_id: int, nid: int, device_id: str, at_ms: int, ttl_ms: int
    ) -> None:
        key = pushed_key(user_id, nid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, device_id, at_ms)
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()

    async def publish(self, payload: str) -> None:
        await self.redis.publish(EVENTS_CHANNEL, payload)

    # -- the queue ---------------------------------------------------------------------

    async def add_attempt(self, entry_id: str) -> int:
        return int(await self.redis.hincrby(ATTEMPTS_KEY, entry_id, 1))

    async def finish(self, queue: ConsumerGroup, entry_id: str) -> None:
        """Acknowledge and delete a done entry, and forget its attempt count.

        One pipelined round trip, not a transaction: acknowledging first means a crash
        in between leaves at worst a stray entry no one will read again (never a pending
        one without data; that case is still handled by ``ConsumerGroup.ack_deleted``).
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            queue.queue_ack(pipe, entry_id)
            pipe.hdel(ATTEMPTS_KEY, entry_id)
            await pipe.execute()

    async def dead_letter(
        self,
        entry_id: str,
        fields: Mapping[bytes, bytes],
        error: str,
        attempts: int,
        at_ms: int,
    ) -> None:
        """Copy an entry to notify:dead with why it failed (before :meth:`finish`)."""
        record: dict[Any, Any] = dict(fields)
        record.update(
            {
                "error": error[:500],
                "attempts": str(attempts),
                "source_id": entry_id,
                "dead_ms": str(at_ms),
            }
        )
        await self.redis.xadd(DEAD_KEY, cast(Any, record), maxlen=DEAD_MAXLEN, approximate=True)

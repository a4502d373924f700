"""Plain data of notify_svc: devices, notifications, queue jobs (no grpc, no Redis).

The queue contract (what chat_svc and feed_svc write to the ``notify:queue`` stream) is
parsed here, in :func:`parse_job`: fields ``kind`` (``chat_message`` or ``feed_post``),
``user_id`` (recipient), ``channel_id``, ``message_id`` (Snowflake), ``sender_id``,
``preview`` (at most 140 characters) and ``created_ms``; every value a decimal string or
UTF-8 text.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

MAX_PREVIEW = 140
MAX_UINT64 = (1 << 64) - 1


class DeviceKind(enum.Enum):
    WEBHOOK = "webhook"


class NotificationKind(enum.Enum):
    CHAT_MESSAGE = "chat_message"
    FEED_POST = "feed_post"


class EventKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"


@dataclass(frozen=True)
class Device:
    """One push target of a user."""

    device_id: str
    kind: DeviceKind
    webhook_url: str
    registered_ms: int


@dataclass(frozen=True)
class Notification:
    """One entry of a user's notification list (one message or a collapsed burst)."""

    notification_id: int
    kind: NotificationKind
    channel_id: int
    sender_id: int
    first_message_id: int
    last_message_id: int
    count: int
    preview: str
    created_ms: int
    updated_ms: int
    read: bool

    def to_json(self) -> dict[str, object]:
        """JSON form for webhooks and events; ids as decimal strings (they exceed 2^53)."""
        return {
            "id": str(self.notification_id),
            "kind": self.kind.value,
            "channel_id": str(self.channel_id),
            "sender_id": str(self.sender_id),
            "first_message_id": str(self.first_message_id),
            "last_message_id": str(self.last_message_id),
            "count": self.count,
            "preview": self.preview,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "read": self.read,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Notification:
        return cls(
            notification_id=int(str(data["id"])),
            kind=NotificationKind(data["kind"]),
            channel_id=int(str(data["channel_id"])),
            sender_id=int(str(data["sender_id"])),
            first_message_id=int(str(data["first_message_id"])),
            last_message_id=int(str(data["last_message_id"])),
            count=int(str(data["count"])),
            preview=str(data["preview"]),
            created_ms=int(str(data["created_ms"])),
            updated_ms=int(str(data["updated_ms"])),
            read=bool(data["read"]),
        )


@dataclass(frozen=True)
class Job:
    """One parsed ``notify:queue`` entry: a message (or post) one user should hear about."""

    kind: NotificationKind
    user_id: int
    channel_id: int
    message_id: int
    sender_id: int
    preview: str
    created_ms: int


@dataclass(frozen=True)
class Event:
    """A notification created or updated, as published to gateway streams."""

    kind: EventKind
    user_id: int
    notification: Notification


class MalformedJob(ValueError):
    """A queue entry that does not follow the contract; it goes to the dead-letter stream."""


def _text(fields: Mapping[bytes, bytes], name: str) -> str:
    raw = fields.get(name.encode())
    if raw is None:
        raise MalformedJob(f"missing field {name}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJob(f"field {name} is not UTF-8") from exc


def _uint(fields: Mapping[bytes, bytes], name: str, allow_zero: bool = False) -> int:
    text = _text(fields, name)
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise MalformedJob(f"field {name} is not a decimal integer: {text[:40]!r}")
    value = int(text)
    if value > MAX_UINT64 or (value == 0 and not allow_zero):
        raise MalformedJob(f"field {name} is out of range: {text}")
    return value


def parse_job(fields: Mapping[bytes, bytes]) -> Job:
    """The job in a raw stream entry; MalformedJob when it breaks the contract.

    A preview longer than 140 characters is cut (writers should not send one, but a long
    preview is no reason to lose the notification).
    """
    kind_text = _text(fields, "kind")
    try:
        kind = NotificationKind(kind_text)
    except ValueError as exc:
        raise MalformedJob(f"unknown kind {kind_text[:40]!r}") from exc
    return Job(
        kind=kind,
        user_id=_uint(fields, "user_id"),
        channel_id=_uint(fields, "channel_id", allow_zero=kind is NotificationKind.FEED_POST),
        message_id=_uint(fields, "message_id"),
        sender_id=_uint(fields, "sender_id", allow_zero=True),
        preview=_text(fields, "preview")[:MAX_PREVIEW],
        created_ms=_uint(fields, "created_ms", allow_zero=True),
    )

"""Plain data of notify_svc: devices, notifications, events (no grpc, no Redis).

The queue jobs (what chat_svc and feed_svc write to the ``notify:queue`` stream) are the
contract in :mod:`feedchat_runtime.notify_queue`, shared with the producers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from feedchat_runtime.notify_queue import NotificationKind


class DeviceKind(enum.Enum):
    WEBHOOK = "webhook"


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
class Event:
    """A notification created or updated, as published to gateway streams."""

    kind: EventKind
    user_id: int
    notification: Notification

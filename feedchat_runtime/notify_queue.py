"""The ``notify:queue`` contract: how chat_svc and feed_svc hand work to notify_svc.

One Redis stream, ``notify:queue``, one entry per (recipient, message or post)::

    XADD notify:queue MAXLEN ~ <cap> * kind chat_message|feed_post user_id <recipient>
        channel_id <id> message_id <snowflake> sender_id <id>
        preview <at most 140 characters> created_ms <ms> [trace context fields]

Every value is a decimal string or UTF-8 text. For ``feed_post`` the channel is the
author (alerts collapse and mute per author). Producers write entries with
:func:`enqueue`; notify_svc reads them back with :func:`parse_job`. Any further fields
(the trace context of :func:`feedchat_runtime.tracing.carrier`) are left to the reader.

This module lives in the runtime, not in notify_svc, so that the producers depend on the
contract only and never on another service's package.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

QUEUE_KEY = "notify:queue"
"""The stream notify_svc consumes (one key: it works on a Redis Cluster too)."""
DEFAULT_CAP = 1_000_000
"""Approximate MAXLEN producers keep the stream under."""
PREVIEW_CHARS = 140
"""Longest preview an entry carries; producers cut longer text, the reader cuts again."""
MAX_UINT64 = (1 << 64) - 1


class NotificationKind(enum.Enum):
    """What an entry is about."""

    CHAT_MESSAGE = "chat_message"
    FEED_POST = "feed_post"


@dataclass(frozen=True)
class Notice:
    """What happened: one chat message or one post, before it is addressed to anyone."""

    kind: NotificationKind
    channel_id: int
    message_id: int
    sender_id: int
    preview: str
    created_ms: int


@dataclass(frozen=True)
class Job(Notice):
    """One queue entry: a notice for one user."""

    user_id: int


class MalformedJob(ValueError):
    """A queue entry that does not follow the contract."""


def entry(notice: Notice, user_id: int) -> dict[str, str]:
    """The stream fields of ``notice`` addressed to ``user_id``."""
    return {
        "kind": notice.kind.value,
        "user_id": str(user_id),
        "channel_id": str(notice.channel_id),
        "message_id": str(notice.message_id),
        "sender_id": str(notice.sender_id),
        "preview": notice.preview[:PREVIEW_CHARS],
        "created_ms": str(notice.created_ms),
    }


def enqueue(
    pipe: Any,
    notice: Notice,
    user_ids: Iterable[int],
    cap: int = DEFAULT_CAP,
    extra: Mapping[str, str] | None = None,
) -> None:
    """Queue one entry per user on ``pipe`` (a Redis pipeline, executed by the caller).

    ``extra`` fields (a trace context) ride along in every entry.
    """
    for user_id in user_ids:
        fields: Any = {**entry(notice, user_id), **(extra or {})}
        pipe.xadd(QUEUE_KEY, fields, maxlen=cap, approximate=True)


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
        preview=_text(fields, "preview")[:PREVIEW_CHARS],
        created_ms=_uint(fields, "created_ms", allow_zero=True),
    )

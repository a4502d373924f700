"""Plain, typed values the client returns (no protobuf in callers' code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _seconds(stamp: Any) -> float | None:
    """A google.protobuf.Timestamp as Unix seconds (None when unset)."""
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


@dataclass(frozen=True)
class User:
    """A public profile."""

    user_id: int
    username: str
    display_name: str = ""
    bio: str = ""
    created_at: float | None = None

    @classmethod
    def from_pb(cls, pb: Any) -> User:
        return cls(pb.user_id, pb.username, pb.display_name, pb.bio, _seconds(pb.created_at))


@dataclass(frozen=True)
class Author:
    user_id: int
    username: str
    display_name: str = ""


@dataclass(frozen=True)
class Post:
    """One post, with its author."""

    post_id: int
    author: Author
    text: str
    created_at: float | None = None

    @classmethod
    def from_pb(cls, pb: Any) -> Post:
        a = pb.author
        return cls(
            pb.post_id,
            Author(a.user_id, a.username, a.display_name),
            pb.text,
            _seconds(pb.created_at),
        )


@dataclass(frozen=True)
class FeedPage:
    """One page of a feed or post list; ``next_page_token`` is empty on the last page."""

    posts: list[Post]
    next_page_token: str


@dataclass(frozen=True)
class FollowPage:
    user_ids: list[int]
    next_page_token: str
    total_count: int


@dataclass(frozen=True)
class FanoutStatus:
    """How far a post's fanout got (see FeedService.GetFanoutStatus)."""

    state: str
    followers_total: int
    followers_done: int
    followers_pending: int
    lag_ms: int
    queue_pending_jobs: int


PRESENCE_NAMES = {0: "unknown", 1: "online", 2: "away", 3: "offline"}


@dataclass(frozen=True)
class Presence:
    """One user's presence: ``status`` is "online", "away" or "offline"."""

    user_id: int
    status: str
    last_seen: float | None = None
    since: float | None = None
    version: int = 0

    @classmethod
    def from_pb(cls, pb: Any) -> Presence:
        return cls(
            pb.user_id,
            PRESENCE_NAMES.get(pb.status, "unknown"),
            _seconds(pb.last_seen_time),
            _seconds(pb.status_change_time),
            pb.version,
        )


@dataclass(frozen=True)
class Route:
    """The chat server that owns a user on the current ring."""

    user_id: int
    address: str
    instance: str
    ring_version: int


@dataclass(frozen=True)
class Channel:
    """A direct channel or a group."""

    channel_id: int
    kind: str
    name: str = ""
    owner_id: int = 0
    member_count: int = 0
    last_seq: int = 0
    member_ids: list[int] = field(default_factory=list)
    read_seq: int = 0
    """Your read marker (from ``channels()`` only)."""
    unread_count: int = 0
    """Messages after your read marker (from ``channels()`` only)."""

    @classmethod
    def from_pb(cls, pb: Any) -> Channel:
        kind = {1: "direct", 2: "group"}.get(pb.kind, "unknown")
        return cls(
            pb.channel_id,
            kind,
            pb.name,
            pb.owner_id,
            pb.member_count,
            pb.last_seq,
            list(pb.member_ids),
            pb.read_seq,
            pb.unread_count,
        )


@dataclass(frozen=True)
class MessageEvent:
    """What a channel event did to an earlier message (``ChatMessage.event``)."""

    kind: str
    """"edit", "delete", "reaction_added" or "reaction_removed"."""
    target_message_id: int
    target_seq: int
    text: str = ""
    """An edit's new text."""
    emoji: str = ""
    """A reaction event's emoji."""

    @classmethod
    def from_pb(cls, pb: Any) -> MessageEvent:
        kind = _EVENT_KINDS.get(int(pb.kind), "unknown")
        return cls(kind, pb.target_message_id, pb.target_seq, pb.text, pb.emoji)


_EVENT_KINDS = {1: "edit", 2: "delete", 3: "reaction_added", 4: "reaction_removed"}
"""EventKind numbers (feedchat.chat.v1.EventKind) -> names."""


@dataclass(frozen=True)
class ReactionCount:
    """One emoji's reactions on a message (history); ``reacted``: yours among them."""

    emoji: str
    count: int
    reacted: bool = False


@dataclass(frozen=True)
class ChatMessage:
    """A stored chat message (from the inbox stream or from history), or a channel event
    (``event`` set: an edit, delete or reaction change of message ``event.target_message_id``).

    From history: ``text`` is the current text (``edited_ms`` when edited), a deleted
    message is a tombstone (``deleted_ms`` set, no text), ``reactions`` counts reactions."""

    message_id: int
    channel_id: int
    seq: int
    sender_id: int
    text: str
    client_msg_id: str
    created_ms: int
    inbox_cursor: str = ""
    reply_to: int = 0
    reply_to_seq: int = 0
    edited_ms: int = 0
    deleted_ms: int = 0
    reactions: tuple[ReactionCount, ...] = ()
    event: MessageEvent | None = None

    @classmethod
    def from_pb(cls, pb: Any) -> ChatMessage:
        return cls(
            pb.message_id,
            pb.channel_id,
            pb.seq,
            pb.sender_id,
            pb.text,
            pb.client_msg_id,
            pb.created_ms,
            pb.inbox_cursor,
            pb.reply_to,
            pb.reply_to_seq,
            pb.edited_ms,
            pb.deleted_ms,
            tuple(ReactionCount(r.emoji, r.count, r.reacted) for r in pb.reactions),
            MessageEvent.from_pb(pb.event) if pb.HasField("event") else None,
        )


@dataclass(frozen=True)
class SentMessage:
    """A send the chat server stored (``duplicate``: a retry of an already stored one)."""

    client_msg_id: str
    message_id: int
    channel_id: int
    seq: int
    duplicate: bool


@dataclass(frozen=True)
class MessageStats:
    """Message counts per bucket: ``counts`` is (bucket start ms, count), oldest first."""

    bucket: str
    counts: list[tuple[int, int]]
    total: int


NOTIFICATION_KINDS = {1: "chat_message", 2: "feed_post"}


@dataclass(frozen=True)
class Notification:
    """One notification: new messages of a channel collapsed together, or a post alert."""

    notification_id: int
    kind: str
    channel_id: int
    sender_id: int
    last_message_id: int
    count: int
    preview: str
    created_at: float | None = None
    updated_at: float | None = None
    read: bool = False

    @classmethod
    def from_pb(cls, pb: Any) -> Notification:
        return cls(
            pb.notification_id,
            NOTIFICATION_KINDS.get(pb.kind, "unknown"),
            pb.channel_id,
            pb.sender_id,
            pb.last_message_id,
            pb.count,
            pb.preview,
            _seconds(pb.created_at),
            _seconds(pb.updated_at),
            pb.read,
        )


@dataclass(frozen=True)
class NotificationPage:
    """One page of notifications, newest first; ``next_page_token`` empty on the last."""

    notifications: list[Notification]
    next_page_token: str

"""Plain data the chat domain passes around (no grpc, no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass, field

DIRECT = "direct"
GROUP = "group"

ZERO_CURSOR = "0-0"


def parse_cursor(text: str) -> tuple[int, int]:
    """A Redis stream id ``<ms>-<seq>`` as a comparable pair; ValueError when malformed."""
    ms, sep, seq = text.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or len(text) > 41:
        raise ValueError(f"{text!r} is not a stream id")
    return int(ms), int(seq)


MESSAGE = ""
"""The kind of a plain message (no event)."""
EDIT, DELETE, REACT, UNREACT = "edit", "delete", "react", "unreact"
"""The kinds of channel events: each is stored and delivered like a message (its own
message id and seq in the channel's order) and changes an earlier message."""
EVENT_KINDS = (EDIT, DELETE, REACT, UNREACT)


@dataclass(frozen=True)
class Draft:
    """What a client asks to store in a channel: a message, or an event on one."""

    client_msg_id: str
    channel_id: int
    text: str = ""
    """A message's text; an edit's new text."""
    kind: str = MESSAGE
    target_id: int = 0
    """An event's target message; for a message, the message it replies to (0: none)."""
    emoji: str = ""
    """A reaction's emoji."""


@dataclass(frozen=True)
class EventLimits:
    """Bounds of channel events (--edit-window, --max-reactions, --max-user-reactions,
    --max-edits)."""

    edit_window_ms: int = 48 * 3_600_000
    max_reactions: int = 20
    """Distinct emoji per message."""
    max_user_reactions: int = 5
    """Reactions of one user on one message."""
    max_edits: int = 100
    """Edits of one message (each keeps an entry until the message is deleted or trimmed)."""


@dataclass(frozen=True)
class Event:
    """What a channel event did, and to which message."""

    kind: str
    target_id: int
    target_seq: int
    text: str = ""
    """An edit's new text."""
    emoji: str = ""
    """A reaction's emoji."""


@dataclass(frozen=True)
class Reaction:
    """One emoji's reactions on a message (history); ``reacted``: the reader's among them."""

    emoji: str
    count: int
    reacted: bool = False


@dataclass(frozen=True)
class StoredMessage:
    """A message (or channel event) as stored; ``inbox_cursor`` is set when read from one
    user's inbox. ``edited_ms``, ``deleted_ms`` and ``reactions`` are the events applied
    (history only); a deleted message keeps no text."""

    message_id: int
    channel_id: int
    seq: int
    sender_id: int
    text: str
    client_msg_id: str
    created_ms: int
    inbox_cursor: str = ""
    reply_to: int = 0
    reply_seq: int = 0
    event: Event | None = None
    edited_ms: int = 0
    deleted_ms: int = 0
    reactions: tuple[Reaction, ...] = ()
    scrub: tuple[int, ...] = ()
    """A delete: the message ids whose inbox entries it removes (internal, not sent)."""


@dataclass(frozen=True)
class InboxEntry:
    """One message appended to ``user_id``'s inbox, and the id of the entry before it."""

    user_id: int
    message: StoredMessage
    prev_cursor: str


@dataclass(frozen=True)
class SendOutcome:
    """What a send stored (or, for a duplicate, had stored before): the message, its
    recipients (the members when it was stored; for a duplicate only while its fanout is
    still pending) and, once it was fanned out, its inbox entries."""

    message: StoredMessage
    duplicate: bool
    entries: list[InboxEntry] = field(default_factory=list)
    recipients: tuple[int, ...] = ()


@dataclass(frozen=True)
class ChannelInfo:
    """A channel's description."""

    channel_id: int
    kind: str
    name: str
    owner_id: int
    member_count: int
    last_seq: int
    member_ids: tuple[int, ...] = ()
    read_seq: int = 0
    """The asking user's read marker (ListChannels only)."""
    unread: int = 0
    """Messages after the read marker, not counting edits, deletes and reactions (which
    take seqs too) (ListChannels only; the user's own sends move the marker)."""


@dataclass(frozen=True)
class Receipt:
    """``kind`` is "delivered" or "read"; goes to the sender's live devices only."""

    kind: str
    channel_id: int
    message_id: int
    seq: int
    user_id: int
    device_id: str = ""
    client_msg_id: str = ""


@dataclass(frozen=True)
class TypingEvent:
    channel_id: int
    user_id: int


PushEvent = InboxEntry | Receipt | TypingEvent


@dataclass(frozen=True)
class Push:
    """One event for one user's live devices."""

    user_id: int
    event: PushEvent


@dataclass(frozen=True)
class SendAck:
    """A stored send's ids, and what else the sender needs to have the whole message
    without its echo: ``created_ms`` and ``target_seq`` (the replied-to or acted-on
    message's seq; 0: none)."""

    client_msg_id: str
    message_id: int
    channel_id: int
    seq: int
    duplicate: bool
    created_ms: int = 0
    target_seq: int = 0

    @classmethod
    def of(cls, client_msg_id: str, outcome: SendOutcome) -> SendAck:
        """The ack of a stored (or, for a duplicate, earlier stored) send."""
        m = outcome.message
        target_seq = m.event.target_seq if m.event is not None else m.reply_seq
        return cls(
            client_msg_id,
            m.message_id,
            m.channel_id,
            m.seq,
            outcome.duplicate,
            m.created_ms,
            target_seq,
        )


@dataclass(frozen=True)
class SendFailure:
    """A refused send; the stream stays open."""

    client_msg_id: str
    code: str
    reason: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class SyncComplete:
    cursor: str
    replayed: int
    instance: str
    ring_version: int


@dataclass(frozen=True)
class Reconnect:
    address: str
    instance: str
    ring_version: int


OutFrame = StoredMessage | SendAck | SendFailure | Receipt | TypingEvent | SyncComplete | Reconnect
"""Everything a Connect stream sends down."""

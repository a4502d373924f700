"""Reading a channel's history with its events applied, and the one mapping between a
stored entry's fields and :class:`~chat_svc.model.StoredMessage`.

The history stream (``chat:chan:{cb:<b>}:<channel>:hist``) holds every message and every
channel event (edit, delete, reaction) at its seq. A page of history is messages only, in
their current state, which ``SEND_MANY`` keeps per message in the channel's state hash
(:mod:`chat_svc.scripts`): the edited text and time, the reaction counts, and for a
deleted message a tombstone. A delete removes the message's history entry (and its
edits'), so a deleted message is found through the channel's message-id index
(``:ids``, seq -> id) instead: a seq of a page's window that the index has and the
stream does not is a tombstone when the state says so (else it was trimmed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chat_svc.keys import chan_history_key, chan_ids_key, chan_state_key
from chat_svc.model import Event, Reaction, StoredMessage
from feedchat_runtime import replies
from feedchat_runtime.redis_client import RedisClient

MAX_ROUNDS = 4
"""Windows of the stream read for one page at most: a page of a channel whose newest
entries are mostly events may come back short (its next_page_token goes on)."""

_EVENT_FIELDS = ("kind", "target", "target_seq", "emoji", "scrub")
_REPLY_FIELDS = ("reply_to", "reply_seq")


def message_of(fields: Mapping[str, str], channel_id: int, seq: int, cursor: str) -> StoredMessage:
    """The message (or event) a history or inbox entry holds."""
    kind = fields.get("kind", "")
    event = None
    text = fields["text"]
    if kind:
        event = Event(
            kind,
            int(fields["target"]),
            int(fields["target_seq"]),
            text=text,
            emoji=fields.get("emoji", ""),
        )
        text = ""
    scrub = tuple(int(i) for i in fields.get("scrub", "").split())
    return StoredMessage(
        message_id=int(fields["message_id"]),
        channel_id=channel_id,
        seq=seq,
        sender_id=int(fields["sender_id"]),
        text=text,
        client_msg_id=fields["client_msg_id"],
        created_ms=int(fields["created_ms"]),
        inbox_cursor=cursor,
        reply_to=int(fields.get("reply_to", 0)),
        reply_seq=int(fields.get("reply_seq", 0)),
        event=event,
        scrub=scrub,
    )


def entry_fields(message: StoredMessage) -> dict[str, str]:
    """The fields an entry of ``message`` holds (the inverse of :func:`message_of`, less
    channel, seq and cursor; the scrub list is not kept in inboxes)."""
    event = message.event
    fields = {
        "message_id": str(message.message_id),
        "sender_id": str(message.sender_id),
        "text": event.text if event is not None else message.text,
        "client_msg_id": message.client_msg_id,
        "created_ms": str(message.created_ms),
    }
    if event is not None:
        fields.update(kind=event.kind, target=str(event.target_id))
        fields.update(target_seq=str(event.target_seq))
        if event.emoji:
            fields.update(emoji=event.emoji)
    elif message.reply_to:
        fields.update(reply_to=str(message.reply_to), reply_seq=str(message.reply_seq))
    return fields


def _list(value: Any) -> list[Any]:
    """A JSON array from Lua's cjson (which writes an empty one as ``{}``)."""
    return value if isinstance(value, list) else []


def _applied(message: StoredMessage, state: dict[str, Any], mine: list[str]) -> StoredMessage:
    """A message with its state (edits, reactions) applied."""
    text = state.get("t", message.text)
    reactions = tuple(
        Reaction(str(emoji), int(count), str(emoji) in mine)
        for emoji, count in _list(state.get("r"))
    )
    return StoredMessage(
        message.message_id,
        message.channel_id,
        message.seq,
        message.sender_id,
        str(text),
        message.client_msg_id,
        message.created_ms,
        reply_to=message.reply_to,
        reply_seq=message.reply_seq,
        edited_ms=int(state.get("e", 0)),
        reactions=reactions,
    )


def _tombstone(channel_id: int, seq: int, state: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        message_id=int(state["i"]),
        channel_id=channel_id,
        seq=seq,
        sender_id=int(state["s"]),
        text="",
        client_msg_id="",
        created_ms=int(state["c"]),
        reply_to=int(state.get("rt", 0)),
        reply_seq=int(state.get("rs", 0)),
        deleted_ms=int(state["d"]),
    )


async def _window(
    redis: RedisClient, channel_id: int, upper: int | None, count: int, reader: int
) -> tuple[list[StoredMessage], int | None]:
    """The messages of one window of the stream below seq ``upper``: up to ``count``
    entries of the stream and the tombstones among them, newest first; and where the
    window ends (None: at the oldest retained entry)."""
    top = "+" if upper is None else f"({upper}-0"
    ceiling = "+inf" if upper is None else f"({upper}"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xrevrange(chan_history_key(channel_id), max=top, min="-", count=count)
        pipe.zrevrangebyscore(
            chan_ids_key(channel_id), ceiling, "-inf", start=0, num=count, withscores=True
        )
        rows, indexed = await pipe.execute()
    low = int(replies.text(rows[-1][0]).split("-", 1)[0]) if len(rows) == count else None
    if len(indexed) == count:  # as many indexed ids: the window ends at the lowest of them
        lowest = int(indexed[-1][1])
        low = lowest if low is None else max(low, lowest)
    present: dict[int, StoredMessage] = {}
    for entry_id, raw in rows:
        seq = int(replies.text(entry_id).split("-", 1)[0])
        fields = replies.fields(raw)
        if (low is None or seq >= low) and "kind" not in fields:
            present[seq] = message_of(fields, channel_id, seq, "")
    missing = [
        seq
        for _, score in indexed
        if (seq := int(score)) not in present and (low is None or seq >= low)
    ]
    seqs = [*present, *missing]
    if not seqs:
        return [], low
    raw_states = await redis.hmget(chan_state_key(channel_id), [f"m:{s}" for s in seqs])
    states = {
        s: json.loads(replies.text(r))
        for s, r in zip(seqs, raw_states, strict=True)
        if r is not None
    }
    reacted = [s for s in present if s in states and _list(states[s].get("r"))]
    mine: dict[int, list[str]] = {}
    if reader and reacted:
        found = await redis.hmget(chan_state_key(channel_id), [f"u:{s}:{reader}" for s in reacted])
        mine = {
            s: json.loads(replies.text(r))
            for s, r in zip(reacted, found, strict=True)
            if r is not None
        }
    out = [_applied(m, states.get(s, {}), _list(mine.get(s))) for s, m in present.items()]
    out += [_tombstone(channel_id, s, states[s]) for s in missing if "d" in states.get(s, {})]
    out.sort(key=lambda m: m.seq, reverse=True)
    return out, low


async def history_page(
    redis: RedisClient, channel_id: int, before: int | None, count: int, reader: int = 0
) -> tuple[list[StoredMessage], int | None]:
    """Up to ``count`` messages below seq ``before`` (None: the newest), newest first,
    with events applied; and the seq the next page starts below (None: no more)."""
    out: list[StoredMessage] = []
    upper = before
    for _ in range(MAX_ROUNDS):
        found, low = await _window(redis, channel_id, upper, count + 1, reader)
        out += found
        if len(out) > count:
            return out[:count], out[count - 1].seq
        if low is None:
            return out, None
        upper = low
    return out, upper

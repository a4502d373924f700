"""Protobuf <-> chat domain dataclasses (transport side only)."""

from __future__ import annotations

from google.protobuf import duration_pb2

from chat_svc.model import (
    DELETE,
    DIRECT,
    EDIT,
    MESSAGE,
    REACT,
    UNREACT,
    ChannelInfo,
    Draft,
    Event,
    InboxEntry,
    OutFrame,
    Push,
    Reaction,
    Receipt,
    SendAck,
    SendFailure,
    StoredMessage,
    SyncComplete,
    TypingEvent,
)
from feedchat.chat.v1 import chat_pb2

_RECEIPT_KINDS = {
    "delivered": chat_pb2.RECEIPT_KIND_DELIVERED,
    "read": chat_pb2.RECEIPT_KIND_READ,
}
_RECEIPT_NAMES = {v: k for k, v in _RECEIPT_KINDS.items()}
_EVENT_KINDS = {
    EDIT: chat_pb2.EVENT_KIND_EDIT,
    DELETE: chat_pb2.EVENT_KIND_DELETE,
    REACT: chat_pb2.EVENT_KIND_REACTION_ADDED,
    UNREACT: chat_pb2.EVENT_KIND_REACTION_REMOVED,
}
_EVENT_NAMES = {v: k for k, v in _EVENT_KINDS.items()}


def message_pb(m: StoredMessage) -> chat_pb2.Message:
    out = chat_pb2.Message(
        message_id=m.message_id,
        channel_id=m.channel_id,
        seq=m.seq,
        sender_id=m.sender_id,
        text=m.text,
        client_msg_id=m.client_msg_id,
        created_ms=m.created_ms,
        inbox_cursor=m.inbox_cursor,
        reply_to=m.reply_to,
        reply_to_seq=m.reply_seq,
        edited_ms=m.edited_ms,
        deleted_ms=m.deleted_ms,
        reactions=[
            chat_pb2.ReactionCount(emoji=r.emoji, count=r.count, reacted=r.reacted)
            for r in m.reactions
        ],
    )
    if m.event is not None:
        e = m.event
        out.event.CopyFrom(
            chat_pb2.MessageEvent(
                kind=_EVENT_KINDS[e.kind],
                target_message_id=e.target_id,
                target_seq=e.target_seq,
                text=e.text,
                emoji=e.emoji,
            )
        )
    return out


def message_from_pb(m: chat_pb2.Message) -> StoredMessage:
    event = None
    if m.HasField("event"):
        e = m.event
        kind = _EVENT_NAMES.get(e.kind, EDIT)
        event = Event(kind, e.target_message_id, e.target_seq, e.text, e.emoji)
    return StoredMessage(
        message_id=m.message_id,
        channel_id=m.channel_id,
        seq=m.seq,
        sender_id=m.sender_id,
        text=m.text,
        client_msg_id=m.client_msg_id,
        created_ms=m.created_ms,
        inbox_cursor=m.inbox_cursor,
        reply_to=m.reply_to,
        reply_seq=m.reply_to_seq,
        event=event,
        edited_ms=m.edited_ms,
        deleted_ms=m.deleted_ms,
        reactions=tuple(Reaction(r.emoji, r.count, r.reacted) for r in m.reactions),
    )


DraftPb = (
    chat_pb2.SendMessage
    | chat_pb2.SendMessageRequest
    | chat_pb2.EditMessage
    | chat_pb2.EditMessageRequest
    | chat_pb2.DeleteMessage
    | chat_pb2.DeleteMessageRequest
    | chat_pb2.AddReaction
    | chat_pb2.AddReactionRequest
    | chat_pb2.RemoveReaction
    | chat_pb2.RemoveReactionRequest
)
"""A client's send or event, as a Connect frame or a unary request."""


def draft_from_pb(request: DraftPb) -> Draft:
    """The domain form of a send or event (frame or unary request: same fields)."""
    if isinstance(request, chat_pb2.SendMessage | chat_pb2.SendMessageRequest):
        return Draft(
            request.client_msg_id, request.channel_id, request.text, MESSAGE, request.reply_to
        )
    if isinstance(request, chat_pb2.EditMessage | chat_pb2.EditMessageRequest):
        return Draft(
            request.client_msg_id, request.channel_id, request.text, EDIT, request.message_id
        )
    if isinstance(request, chat_pb2.DeleteMessage | chat_pb2.DeleteMessageRequest):
        return Draft(request.client_msg_id, request.channel_id, "", DELETE, request.message_id)
    kind = (
        REACT
        if isinstance(request, chat_pb2.AddReaction | chat_pb2.AddReactionRequest)
        else UNREACT
    )
    return Draft(
        request.client_msg_id, request.channel_id, "", kind, request.message_id, request.emoji
    )


def receipt_pb(r: Receipt) -> chat_pb2.Receipt:
    return chat_pb2.Receipt(
        kind=_RECEIPT_KINDS[r.kind],
        channel_id=r.channel_id,
        message_id=r.message_id,
        seq=r.seq,
        user_id=r.user_id,
        device_id=r.device_id,
        client_msg_id=r.client_msg_id,
    )


def receipt_from_pb(r: chat_pb2.Receipt) -> Receipt:
    return Receipt(
        kind=_RECEIPT_NAMES.get(r.kind, "delivered"),
        channel_id=r.channel_id,
        message_id=r.message_id,
        seq=r.seq,
        user_id=r.user_id,
        device_id=r.device_id,
        client_msg_id=r.client_msg_id,
    )


def channel_pb(c: ChannelInfo) -> chat_pb2.Channel:
    return chat_pb2.Channel(
        channel_id=c.channel_id,
        kind=chat_pb2.CHANNEL_KIND_DIRECT if c.kind == DIRECT else chat_pb2.CHANNEL_KIND_GROUP,
        name=c.name,
        owner_id=c.owner_id,
        member_count=c.member_count,
        last_seq=c.last_seq,
        member_ids=list(c.member_ids),
        read_seq=c.read_seq,
        unread_count=c.unread,
    )


def send_ack_pb(ack: SendAck) -> chat_pb2.SendAck:
    return chat_pb2.SendAck(
        client_msg_id=ack.client_msg_id,
        message_id=ack.message_id,
        channel_id=ack.channel_id,
        seq=ack.seq,
        duplicate=ack.duplicate,
        created_ms=ack.created_ms,
        target_seq=ack.target_seq,
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def frames_pb(frames: list[OutFrame]) -> chat_pb2.ConnectResponse:
    """One server frame for frames that go together: the frame itself when alone, else a
    ``batch`` of them in order."""
    if len(frames) == 1:
        return frame_pb(frames[0])
    return chat_pb2.ConnectResponse(
        batch=chat_pb2.FrameBatch(frames=[frame_pb(frame) for frame in frames])
    )


def frame_pb(frame: OutFrame) -> chat_pb2.ConnectResponse:
    """The server frame for one outbound item."""
    if isinstance(frame, StoredMessage):
        return chat_pb2.ConnectResponse(message=message_pb(frame))
    if isinstance(frame, SendAck):
        return chat_pb2.ConnectResponse(send_ack=send_ack_pb(frame))
    if isinstance(frame, SendFailure):
        error = chat_pb2.SendError(
            client_msg_id=frame.client_msg_id,
            code=frame.code,
            reason=frame.reason,
            message=frame.message,
        )
        if frame.retry_after is not None:
            error.retry_after.CopyFrom(_duration(frame.retry_after))
        return chat_pb2.ConnectResponse(send_error=error)
    if isinstance(frame, Receipt):
        return chat_pb2.ConnectResponse(receipt=receipt_pb(frame))
    if isinstance(frame, TypingEvent):
        return chat_pb2.ConnectResponse(
            typing=chat_pb2.TypingEvent(channel_id=frame.channel_id, user_id=frame.user_id)
        )
    if isinstance(frame, SyncComplete):
        return chat_pb2.ConnectResponse(
            sync_complete=chat_pb2.SyncComplete(
                inbox_cursor=frame.cursor,
                replayed=frame.replayed,
                instance=frame.instance,
                ring_version=frame.ring_version,
            )
        )
    return chat_pb2.ConnectResponse(
        reconnect=chat_pb2.ReconnectElsewhere(
            address=frame.address, instance=frame.instance, ring_version=frame.ring_version
        )
    )


def push_pb(push: Push) -> chat_pb2.Push:
    event = push.event
    if isinstance(event, InboxEntry):
        return chat_pb2.Push(
            user_id=push.user_id,
            entry=chat_pb2.InboxEntry(
                message=message_pb(event.message), prev_inbox_cursor=event.prev_cursor
            ),
        )
    if isinstance(event, Receipt):
        return chat_pb2.Push(user_id=push.user_id, receipt=receipt_pb(event))
    return chat_pb2.Push(
        user_id=push.user_id,
        typing=chat_pb2.TypingEvent(channel_id=event.channel_id, user_id=event.user_id),
    )


def push_from_pb(push: chat_pb2.Push) -> Push | None:
    which = push.WhichOneof("event")
    if which == "entry":
        return Push(
            push.user_id,
            InboxEntry(
                push.user_id, message_from_pb(push.entry.message), push.entry.prev_inbox_cursor
            ),
        )
    if which == "receipt":
        return Push(push.user_id, receipt_from_pb(push.receipt))
    if which == "typing":
        return Push(push.user_id, TypingEvent(push.typing.channel_id, push.typing.user_id))
    return None

"""A chat device's live connection that survives redirects, rebalances and server loss.

One background task keeps the device's ``ChatService.Connect`` stream open:

1. ask the router which chat server owns the user (or use the address a redirect or a
   ``reconnect`` frame named), keeping the ring version of that answer;
2. open Connect there with ``hello{device_id, inbox_cursor, ring_version}``, then re-send
   every unanswered send and the newest ``read`` of each channel; the server replays the
   inbox after the cursor, then pushes live messages;
3. when the server answers FAILED_PRECONDITION ``WRONG_CHAT_SERVER``, go straight to the
   ``owner_address`` in its ErrorInfo metadata; when it sends ``reconnect`` (the user
   moved in a rebalance, or the server is draining), go to the address in the frame;
4. after any other drop, wait with exponential backoff and full jitter, route again, and
   resume from the cursor — nothing persisted is lost.

This is the algorithm docs/chat.md ("The client algorithm") spells out for any client.

Messages are de-duplicated by message id (a bounded window), the cursor only moves
forward and is saved in a :class:`~feedchat_client.cursors.CursorStore` and acked to the
server. Every send keeps its ``client_msg_id`` and is re-sent on each new stream until the
server acks it; the server's idempotency turns retries into one stored message.

The hello sets ``omit_own_echo``: the server does not send a stream's own messages and
channel events back to it. The connection hands each one to ``messages()`` itself when its
``send_ack`` comes (the ack carries everything the stored message has that the send did
not: ids, seq, creation time, the replied-to or acted-on message's seq). A copy that does
come from the server later (a replay after a reconnect, or a duplicate ack of a retry) has
the same message id and is dropped by the de-duplication like any repeat.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

import grpc

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.chat_device import (
    FATAL_CODES,
    RETRYABLE_SEND_CODES,
    ChatDevice,
    ConnectionClosed,
    DeviceOptions,
    StateCallback,
    ring_version,
)
from feedchat_client.errors import (
    STATUS_LOST_TO_A_SEND,
    ChatSendError,
    RpcError,
    ServiceNotFound,
    lost_to_a_send,
)
from feedchat_client.ids import decode
from feedchat_client.models import ChatMessage, MessageEvent, SentMessage

if TYPE_CHECKING:
    from feedchat_client.chat import RouterClient

__all__ = ["ChatConnection", "ConnectionClosed", "StateCallback", "unbatched"]


@dataclass
class _Pending:
    request: chat_pb2.ConnectRequest
    future: asyncio.Future[SentMessage]


@dataclass
class _Next:
    """What to do after a stream ends."""

    address: str | None  # None: ask the router
    immediate: bool  # a redirect/move: no backoff (only a little jitter)
    reason: str
    ring_version: int = 0  # of the answer that named ``address``


_ACK = object()


class StreamOptions(DeviceOptions, total=False):
    move_jitter: float
    """At most this many seconds' wait before following a move after the first (0.2)."""


class ChatConnection(ChatDevice):
    """A device's self-healing chat stream. Use as ``async with client.chat.connection(...)``.

    Attributes worth reading: ``cursor`` (inbox position taken so far), ``address`` and
    ``instance`` (current chat server), ``connects``, ``redirects``, ``moves``,
    ``duplicates_dropped``.

    Sends made at the same moment go up as one ``send_batch`` frame. Its ``messages()``
    include the messages and channel events this connection sent itself, once each: the
    hello sets ``Hello.omit_own_echo``, so the server does not send them back, and the
    connection yields each one when the server acks it (before ``send`` and the other
    send methods return), with everything the server's copy has except ``inbox_cursor``
    (empty: it did not come from the inbox). Should the server's copy come too (a replay
    after a reconnect, or a retried send), it is dropped as a repeat by message id. Own
    messages do not move the cursor: a new connection (say, after a restart) whose saved
    cursor is before them gets them from the inbox replay, like any message after it.
    """

    _kind = "chat connection"

    def __init__(
        self, router: RouterClient, device_id: str, **options: Unpack[StreamOptions]
    ) -> None:
        super().__init__(router, device_id, options)
        self._router = router
        self._move_jitter = options.get("move_jitter", 0.2)
        self.connects = 0
        self.moves = 0
        self._pending: dict[str, _Pending] = {}
        self._reads: dict[int, int] = {}  # channel -> newest seq marked read
        self._outbox: asyncio.Queue[Any] | None = None
        self._ack_queued = False
        self._streak = 0

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Until a stream has synced (the inbox replay is done); raises if it failed."""
        waiter = asyncio.ensure_future(self._connected.wait())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({waiter, done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            done.cancel()
        if self.error is not None:
            raise self.error
        if not self._connected.is_set():
            raise TimeoutError("chat connection did not sync in time")

    def _ended(self, error: BaseException | None) -> None:
        """Unacked sends fail with the error (:class:`ConnectionClosed` when closed)."""
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(error or self._closed())
        self._pending.clear()

    # -- the application's side -----------------------------------------------------------

    async def send(
        self,
        channel_id: int,
        text: str,
        *,
        reply_to: int = 0,
        client_msg_id: str | None = None,
        timeout: float | None = None,
    ) -> SentMessage:  # noqa: ASYNC109
        """Send and wait for the server's ack. Re-sent with the same ``client_msg_id`` on
        every new stream until acked; :class:`ChatSendError` if refused for good.
        ``reply_to``: the message_id of an earlier message of the channel it answers.

        A ``timeout`` only stops the waiting: the send stays pending and is still retried
        until acked or the connection closes. Calling ``send`` again with the same
        ``client_msg_id`` waits for that same pending send."""
        cmid = client_msg_id or uuid.uuid4().hex
        frame = chat_pb2.SendMessage(
            client_msg_id=cmid, channel_id=channel_id, text=text, reply_to=reply_to
        )
        return await self._submit(chat_pb2.ConnectRequest(send=frame), cmid, timeout)

    async def edit(
        self,
        channel_id: int,
        message_id: int,
        text: str,
        *,
        client_msg_id: str | None = None,
        timeout: float | None = None,
    ) -> SentMessage:  # noqa: ASYNC109
        """Edit a message you sent (an ``edit`` frame, retried and acked like a send)."""
        cmid = client_msg_id or uuid.uuid4().hex
        frame = chat_pb2.EditMessage(
            client_msg_id=cmid, channel_id=channel_id, message_id=message_id, text=text
        )
        return await self._submit(chat_pb2.ConnectRequest(edit=frame), cmid, timeout)

    async def delete(
        self,
        channel_id: int,
        message_id: int,
        *,
        client_msg_id: str | None = None,
        timeout: float | None = None,
    ) -> SentMessage:  # noqa: ASYNC109
        """Delete a message (a ``delete`` frame, retried and acked like a send)."""
        cmid = client_msg_id or uuid.uuid4().hex
        frame = chat_pb2.DeleteMessage(
            client_msg_id=cmid, channel_id=channel_id, message_id=message_id
        )
        return await self._submit(chat_pb2.ConnectRequest(delete=frame), cmid, timeout)

    async def react(
        self,
        channel_id: int,
        message_id: int,
        emoji: str,
        *,
        remove: bool = False,
        client_msg_id: str | None = None,
        timeout: float | None = None,
    ) -> SentMessage:  # noqa: ASYNC109
        """Add (``remove``: take back) a reaction (a ``react``/``unreact`` frame, retried
        and acked like a send)."""
        cmid = client_msg_id or uuid.uuid4().hex
        if remove:
            removed = chat_pb2.RemoveReaction(
                client_msg_id=cmid, channel_id=channel_id, message_id=message_id, emoji=emoji
            )
            request = chat_pb2.ConnectRequest(unreact=removed)
        else:
            added = chat_pb2.AddReaction(
                client_msg_id=cmid, channel_id=channel_id, message_id=message_id, emoji=emoji
            )
            request = chat_pb2.ConnectRequest(react=added)
        return await self._submit(request, cmid, timeout)

    async def _submit(
        self, request: chat_pb2.ConnectRequest, cmid: str, timeout: float | None
    ) -> SentMessage:  # noqa: ASYNC109
        """Queue a send or event frame until acked (see :meth:`send`)."""
        if self._done.is_set():
            raise self._closed()
        pending = self._pending.get(cmid)
        if pending is None:
            pending = _Pending(request, asyncio.get_running_loop().create_future())
            self._pending[cmid] = pending
            if self._outbox is not None:
                self._outbox.put_nowait(request)
        return await asyncio.wait_for(asyncio.shield(pending.future), timeout)

    def mark_read(self, channel_id: int, seq: int) -> bool:
        """Tell the server the user read a channel up to ``seq``; the newest mark per
        channel is sent again on every new stream (markers only move forward, so that is
        harmless). False while no stream is open (it goes out on the next one)."""
        if seq > self._reads.get(channel_id, 0):
            self._reads[channel_id] = seq
        return self._put(
            chat_pb2.ConnectRequest(read=chat_pb2.Read(channel_id=channel_id, seq=seq))
        )

    def typing(self, channel_id: int) -> bool:
        """Tell the channel's members the user is typing (best effort)."""
        return self._put(chat_pb2.ConnectRequest(typing=chat_pb2.Typing(channel_id=channel_id)))

    def _put(self, request: chat_pb2.ConnectRequest) -> bool:
        if self._outbox is None:
            return False
        self._outbox.put_nowait(request)
        return True

    # -- the stream loop ----------------------------------------------------------------

    async def _loop(self) -> None:
        target = self._first_address
        while True:
            try:
                if target is None:
                    self._state("routing", f"user {self._user_id}")
                    route = await self._router.route(self._user_id)
                    target, self._ring_version = route.address, route.ring_version
                after = await self._stream(target)
            except RpcError as error:
                if error.code in FATAL_CODES:
                    self._give_up(error)
                    return
                after = _Next(None, False, str(error))
            except ServiceNotFound as error:
                after = _Next(None, False, str(error))
            except grpc.aio.AioRpcError as exc:  # e.g. the channel broke mid-setup
                after = _Next(None, False, f"{exc.code().name}: {exc.details()}")
            target, self._ring_version = after.address, after.ring_version
            if after.immediate and self._streak < self._max_redirects:
                self._streak += 1
                delay = random.uniform(0, self._move_jitter) if self._streak > 1 else 0.0
            else:
                self._streak = 0
                target = None  # too many redirects in a row (rings disagree): ask the router
                delay = self.backoff.next_delay()
            self._state("reconnecting", f"{after.reason}; next try in {delay:.2f}s")
            await asyncio.sleep(delay)

    async def _requests(self, outbox: asyncio.Queue[Any]) -> AsyncIterator[chat_pb2.ConnectRequest]:
        yield chat_pb2.ConnectRequest(
            hello=chat_pb2.Hello(
                device_id=self.device_id,
                inbox_cursor=self.cursor,
                ring_version=self._ring_version,
                batch_frames=True,
                omit_own_echo=True,  # _acked hands our own messages over instead
            )
        )
        while True:
            items = [await outbox.get()]
            while not outbox.empty():  # what was queued at once goes out together
                items.append(outbox.get_nowait())
            sends: list[chat_pb2.SendMessage] = []
            for item in items:
                if item is not None and item is not _ACK and item.WhichOneof("frame") == "send":
                    sends.append(item.send)
                    continue
                for request in _together(sends):
                    yield request
                sends = []
                if item is None:
                    return
                if item is _ACK:
                    self._ack_queued = False
                    if self.cursor:
                        yield chat_pb2.ConnectRequest(ack=chat_pb2.Ack(inbox_cursor=self.cursor))
                else:
                    yield item
            for request in _together(sends):
                yield request

    async def _stream(self, address: str) -> _Next:
        self._state("connecting", address)
        metadata = await self._session.metadata()
        stub: Any = chat_pb2_grpc.ChatServiceStub(self._transport.channel_to(address))
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        call = stub.Connect(self._requests(outbox), metadata=metadata)
        self._outbox, self._ack_queued = outbox, False
        for pending in self._pending.values():  # unacked sends: same client_msg_id again
            outbox.put_nowait(pending.request)
        for channel_id, seq in self._reads.items():  # forward-only: no receipt unless moved
            outbox.put_nowait(
                chat_pb2.ConnectRequest(read=chat_pb2.Read(channel_id=channel_id, seq=seq))
            )
        try:
            async for frame in unbatched(call):
                which = frame.WhichOneof("frame")
                if which == "message":
                    self._take(frame.message)
                elif which == "send_ack":
                    self._acked(frame.send_ack)
                elif which == "send_error":
                    self._refused(frame.send_error, outbox)
                elif which == "sync_complete":
                    self.address, self.instance = address, frame.sync_complete.instance
                    self.connects += 1
                    self._streak = 0
                    self.backoff.reset()
                    self._connected.set()
                    self._state(
                        "connected",
                        f"{self.instance} ({address}), {frame.sync_complete.replayed} replayed",
                    )
                elif which == "reconnect":
                    moved = frame.reconnect
                    self.moves += 1
                    self._state("moved", moved.instance or "owner unknown")
                    return _Next(
                        moved.address or None,
                        True,
                        f"moved to {moved.instance or 'another server'}",
                        moved.ring_version,
                    )
            return _Next(None, False, "stream ended")
        except grpc.aio.AioRpcError as exc:
            if lost_to_a_send(exc):  # a frame crossed the stream's end: its status is gone
                return _Next(None, False, STATUS_LOST_TO_A_SEND)
            error = await RpcError.from_call(exc)
            if (
                error.code == grpc.StatusCode.FAILED_PRECONDITION
                and error.reason == "WRONG_CHAT_SERVER"
            ):
                self.redirects += 1
                owner = error.metadata.get("owner_address") or None
                self._state(
                    "redirected",
                    f"{error.metadata.get('owner_instance', '?')} ({owner or 'ask the router'})",
                )
                return _Next(owner, True, "redirected", ring_version(error.metadata))
            if error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "TOKEN_EXPIRED":
                await self._session.refresh(spent=metadata[0][1].removeprefix("Bearer "))
                return _Next(address, True, "token refreshed", self._ring_version)
            if error.code in FATAL_CODES:
                raise error from None
            return _Next(None, False, str(error))
        finally:
            self._outbox = None
            self._connected.clear()
            outbox.put_nowait(None)
            call.cancel()

    def _take(self, pb: chat_pb2.Message) -> None:
        message = ChatMessage.from_pb(pb)
        if (
            self._advance(message.inbox_cursor)
            and self._outbox is not None
            and not self._ack_queued
        ):
            self._ack_queued = True
            self._outbox.put_nowait(_ACK)
        self._deliver(message)

    def _acked(self, ack: chat_pb2.SendAck) -> None:
        """Resolve the send and hand the message it stored to ``messages()`` (first: when
        ``send`` returns, the message is there). A duplicate ack of a message already
        handed over, or taken from the inbox, is dropped by its message id."""
        pending = self._pending.pop(ack.client_msg_id, None)
        if pending is None:
            return
        self._deliver(_own_message(pending.request, ack, self._user_id))
        if not pending.future.done():
            pending.future.set_result(
                SentMessage(
                    ack.client_msg_id, ack.message_id, ack.channel_id, ack.seq, ack.duplicate
                )
            )

    def _refused(self, error: chat_pb2.SendError, outbox: asyncio.Queue[Any]) -> None:
        pending = self._pending.get(error.client_msg_id)
        if pending is None:
            return
        if error.code in RETRYABLE_SEND_CODES:
            delay = error.retry_after.seconds + error.retry_after.nanos / 1e9
            delay = delay or self.backoff.base

            def again() -> None:
                # Only on the same stream: a new stream re-sends every pending send anyway.
                if self._pending.get(error.client_msg_id) is pending and self._outbox is outbox:
                    outbox.put_nowait(pending.request)

            asyncio.get_running_loop().call_later(delay, again)
            return
        del self._pending[error.client_msg_id]
        if not pending.future.done():
            pending.future.set_exception(
                ChatSendError(error.client_msg_id, error.code, error.reason, error.message)
            )


MAX_SEND_BATCH = 64
"""Most sends in one send_batch frame (the server's bound)."""


def _own_message(
    request: chat_pb2.ConnectRequest, ack: chat_pb2.SendAck, sender_id: int
) -> ChatMessage:
    """The message (or channel event) an acked send stored, as the server would have
    echoed it, from the send and its ack (``created_ms`` from the id when the server's
    ack lacks it)."""
    created_ms = ack.created_ms or decode(ack.message_id).unix_ms
    which = request.WhichOneof("frame")
    if which == "send":
        send = request.send
        return ChatMessage(
            ack.message_id,
            ack.channel_id,
            ack.seq,
            sender_id,
            send.text,
            ack.client_msg_id,
            created_ms,
            reply_to=send.reply_to,
            reply_to_seq=ack.target_seq,
        )
    if which == "edit":
        event = MessageEvent("edit", request.edit.message_id, ack.target_seq, request.edit.text)
    elif which == "delete":
        event = MessageEvent("delete", request.delete.message_id, ack.target_seq)
    elif which == "react":
        react = request.react
        event = MessageEvent("reaction_added", react.message_id, ack.target_seq, emoji=react.emoji)
    else:
        unreact = request.unreact
        event = MessageEvent(
            "reaction_removed", unreact.message_id, ack.target_seq, emoji=unreact.emoji
        )
    return ChatMessage(
        ack.message_id,
        ack.channel_id,
        ack.seq,
        sender_id,
        "",
        ack.client_msg_id,
        created_ms,
        event=event,
    )


def _together(sends: list[chat_pb2.SendMessage]) -> list[chat_pb2.ConnectRequest]:
    """Frames for sends queued at once: one ``send`` alone, else ``send_batch`` frames."""
    if len(sends) == 1:
        return [chat_pb2.ConnectRequest(send=sends[0])]
    return [
        chat_pb2.ConnectRequest(
            send_batch=chat_pb2.SendBatch(sends=sends[start : start + MAX_SEND_BATCH])
        )
        for start in range(0, len(sends), MAX_SEND_BATCH)
    ]


async def unbatched(
    frames: AsyncIterator[chat_pb2.ConnectResponse],
) -> AsyncIterator[chat_pb2.ConnectResponse]:
    """The server's frames one by one: a ``batch`` frame (sent because the hello asked for
    them) becomes the frames it carries, in order."""
    async for frame in frames:
        if frame.WhichOneof("frame") == "batch":
            for inner in frame.batch.frames:
                yield inner
        else:
            yield frame

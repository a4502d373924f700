"""A chat device on unary calls only: long-poll the inbox, send with ``SendMessage``.

For places a bidirectional stream cannot go (the CLI's ``feedchat chat --poll``, scripts,
proxies that only speak unary HTTP/2 or grpc-web). Same surface as
:class:`~feedchat_client.chat_stream.ChatConnection` (``async with``, ``messages()``,
``send()``), and the same algorithm as docs/chat.md ("Without a stream"):

1. ask the router which chat server owns the user (keep the answer's ring version);
2. ``PollInbox(device_id, cursor, wait)`` there, again and again, passing the previous
   answer's cursor (that is the ack); an answer comes at once when messages wait, else
   when one arrives or the wait ends;
3. FAILED_PRECONDITION ``WRONG_CHAT_SERVER``: poll the ``owner_address`` it names at
   once (a ring change also ends a held poll this way);
4. anything else: back off (exponential, full jitter), route again, resume from the
   cursor — nothing is lost or repeated.

Sends go to any chat server; each keeps its ``client_msg_id`` through retries
(UNAVAILABLE, RESOURCE_EXHAUSTED after its ``retry_after``), so a retry of a stored
message is answered ``duplicate`` and stored once.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Unpack

import grpc
from google.protobuf import duration_pb2

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.backoff import Backoff
from feedchat_client.chat_device import (
    FATAL_CODES,
    RETRYABLE_SEND_CODES,
    ChatDevice,
    DeviceOptions,
    ring_version,
)
from feedchat_client.errors import ChatSendError, RpcError, ServiceNotFound
from feedchat_client.models import ChatMessage, SentMessage

if TYPE_CHECKING:
    from feedchat_client.chat import ChatClient


class PollOptions(DeviceOptions, total=False):
    wait: float
    """Seconds each poll may be held (25)."""


class ChatPoller(ChatDevice):
    """A device's long-poll loop and unary sends. Use as ``async with
    client.chat.poller(...)``. ``cursor``, ``address``, ``instance``, ``polls`` and
    ``redirects`` say where it is."""

    _kind = "chat poller"

    def __init__(self, chat: ChatClient, device_id: str, **options: Unpack[PollOptions]) -> None:
        super().__init__(chat, device_id, options)
        self._chat = chat
        self.wait = options.get("wait", 25.0)
        self.polls = 0
        self._sending = asyncio.Lock()

    async def send(
        self, channel_id: int, text: str, *, reply_to: int = 0, client_msg_id: str | None = None
    ) -> SentMessage:
        """``SendMessage`` (any chat server), retried with the same ``client_msg_id`` on
        UNAVAILABLE and RESOURCE_EXHAUSTED; :class:`ChatSendError` if refused for good.
        ``reply_to``: the message_id of an earlier message of the channel it answers.

        One send at a time, in call order (as a stream's sends are stored): concurrent
        unary calls could otherwise be stored in any order."""
        return await self._store(
            functools.partial(self._chat.send_message, channel_id, text, reply_to=reply_to),
            client_msg_id,
        )

    async def edit(
        self, channel_id: int, message_id: int, text: str, *, client_msg_id: str | None = None
    ) -> SentMessage:
        """``EditMessage``, in order with sends and retried like them."""
        return await self._store(
            functools.partial(self._chat.edit_message, channel_id, message_id, text),
            client_msg_id,
        )

    async def delete(
        self, channel_id: int, message_id: int, *, client_msg_id: str | None = None
    ) -> SentMessage:
        """``DeleteMessage``, in order with sends and retried like them."""
        return await self._store(
            functools.partial(self._chat.delete_message, channel_id, message_id), client_msg_id
        )

    async def react(
        self,
        channel_id: int,
        message_id: int,
        emoji: str,
        *,
        remove: bool = False,
        client_msg_id: str | None = None,
    ) -> SentMessage:
        """``AddReaction`` (``remove``: ``RemoveReaction``), in order with sends and retried
        like them."""
        call = self._chat.remove_reaction if remove else self._chat.add_reaction
        return await self._store(
            functools.partial(call, channel_id, message_id, emoji), client_msg_id
        )

    async def _store(
        self, call: Callable[..., Awaitable[SentMessage]], client_msg_id: str | None
    ) -> SentMessage:
        """One unary send or event at a time: ``call(client_msg_id=...)`` retried with the
        same key on UNAVAILABLE and RESOURCE_EXHAUSTED."""
        cmid = client_msg_id or uuid.uuid4().hex
        async with self._sending:
            backoff = Backoff(self.backoff.base, self.backoff.cap)
            while True:
                if self._done.is_set():
                    raise self._closed()
                try:
                    return await call(client_msg_id=cmid)
                except RpcError as error:
                    if error.code.name not in RETRYABLE_SEND_CODES:
                        raise ChatSendError(
                            cmid, error.code.name, error.reason, error.message
                        ) from None
                    await asyncio.sleep(error.retry_after or backoff.next_delay())

    async def _loop(self) -> None:
        target = self._first_address
        streak = 0
        while True:
            try:
                if target is None:
                    self._state("routing", f"user {self._user_id}")
                    route = await self._chat.router.route(self._user_id)
                    target, self._ring_version = route.address, route.ring_version
                await self._poll(target)
                streak = 0
                continue
            except RpcError as error:
                if error.reason == "WRONG_CHAT_SERVER" and streak < self._max_redirects:
                    streak += 1
                    self.redirects += 1
                    target = error.metadata.get("owner_address") or None
                    self._ring_version = ring_version(error.metadata)
                    self._state("redirected", target or "ask the router")
                    continue
                if error.code in FATAL_CODES:
                    self._give_up(error)
                    return
                reason = str(error)
            except ServiceNotFound as error:
                reason = str(error)
            target, streak = None, 0
            delay = self.backoff.next_delay()
            self._state("reconnecting", f"{reason}; next try in {delay:.2f}s")
            await asyncio.sleep(delay)

    async def _poll(self, address: str) -> None:
        request = chat_pb2.PollInboxRequest(
            device_id=self.device_id,
            inbox_cursor=self.cursor,
            ring_version=self._ring_version,
            wait=duration_pb2.Duration(seconds=int(self.wait), nanos=int(self.wait % 1 * 1e9)),
        )
        stub: Any = chat_pb2_grpc.ChatServiceStub(self._transport.channel_to(address))
        metadata = await self._session.metadata()
        try:
            reply = await stub.PollInbox(request, metadata=metadata, timeout=self.wait + 10)
        except grpc.aio.AioRpcError as exc:
            error = await RpcError.from_call(exc)
            if error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "TOKEN_EXPIRED":
                await self._session.refresh(spent=metadata[0][1].removeprefix("Bearer "))
                return
            raise error from None
        self.polls += 1
        if not self._connected.is_set() or self.address != address:
            self.address, self.instance = address, reply.instance
            self._connected.set()
            self._state("connected", f"{self.instance} ({address}), polling")
        self.backoff.reset()
        for pb in reply.messages:
            self._deliver(ChatMessage.from_pb(pb))
        self._advance(reply.inbox_cursor)

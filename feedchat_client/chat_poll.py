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
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import duration_pb2

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_client.auth import Session
from feedchat_client.backoff import Backoff
from feedchat_client.chat_stream import (
    FATAL_CODES,
    RETRYABLE_SEND_CODES,
    ConnectionClosed,
    StateCallback,
)
from feedchat_client.cursors import CursorStore, cursor_key
from feedchat_client.errors import ChatSendError, RpcError, ServiceNotFound
from feedchat_client.models import ChatMessage, SentMessage
from feedchat_client.transport import Transport

if TYPE_CHECKING:
    from feedchat_client.chat import ChatClient

logger = logging.getLogger(__name__)


class ChatPoller:
    """A device's long-poll loop and unary sends. Use as ``async with
    client.chat.poller(...)``. ``cursor``, ``address``, ``instance``, ``polls`` and
    ``redirects`` say where it is."""

    def __init__(
        self,
        transport: Transport,
        session: Session,
        chat: ChatClient,
        device_id: str,
        *,
        cursors: CursorStore,
        backoff: Backoff,
        on_state: StateCallback | None = None,
        wait: float = 25.0,
        first_address: str | None = None,
        max_redirects: int = 5,
        dedupe_window: int = 10_000,
    ) -> None:
        self._transport = transport
        self._session = session
        self._chat = chat
        self.device_id = device_id
        self._cursors = cursors
        self.backoff = backoff
        self._on_state = on_state
        self.wait = wait
        self._first_address = first_address
        self._max_redirects = max_redirects
        self._dedupe_window = dedupe_window
        self._user_id = 0
        self.cursor = ""
        self.address = ""
        self.instance = ""
        self.polls = 0
        self.redirects = 0
        self._ring_version = 0
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._inbox: asyncio.Queue[ChatMessage | None] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()
        self.error: BaseException | None = None

    async def start(self) -> ChatPoller:
        self._user_id = self._session.user_id
        self.cursor = self._cursors.load(self._user_id, self.device_id)
        self._task = asyncio.create_task(self._run(), name=f"poll-{self.device_id}")
        return self

    async def __aenter__(self) -> ChatPoller:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        if not self._done.is_set():
            self.error = error
            self._done.set()
            self._inbox.put_nowait(None)

    def _state(self, state: str, detail: str) -> None:
        logger.debug("poll %s: %s %s", self.device_id, state, detail)
        if self._on_state is not None:
            self._on_state(state, detail)

    async def messages(self) -> AsyncIterator[ChatMessage]:
        """Every inbox message once, until the poller ends."""
        while True:
            message = await self._inbox.get()
            if message is None:
                self._inbox.put_nowait(None)
                if self.error is not None:
                    raise self.error
                return
            yield message

    async def next_message(self, timeout: float | None = None) -> ChatMessage:  # noqa: ASYNC109
        message = await asyncio.wait_for(self._inbox.get(), timeout)
        if message is None:
            self._inbox.put_nowait(None)
            raise self.error or ConnectionClosed("poller closed")
        return message

    async def send(
        self, channel_id: int, text: str, *, client_msg_id: str | None = None
    ) -> SentMessage:
        """``SendMessage`` (any chat server), retried with the same ``client_msg_id`` on
        UNAVAILABLE and RESOURCE_EXHAUSTED; :class:`ChatSendError` if refused for good.

        One send at a time, in call order (as a stream's sends are stored): concurrent
        unary calls could otherwise be stored in any order."""
        async with self._sending:
            return await self._send(channel_id, text, client_msg_id or uuid.uuid4().hex)

    async def _send(self, channel_id: int, text: str, cmid: str) -> SentMessage:
        backoff = Backoff(self.backoff.base, self.backoff.cap)
        while True:
            if self._done.is_set():
                raise self.error or ConnectionClosed("poller closed")
            try:
                return await self._chat.send_message(channel_id, text, client_msg_id=cmid)
            except RpcError as error:
                if error.code.name not in RETRYABLE_SEND_CODES:
                    raise ChatSendError(
                        cmid, error.code.name, error.reason, error.message
                    ) from None
                await asyncio.sleep(error.retry_after or backoff.next_delay())

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            logger.exception("chat poller %s failed", self.device_id)
            self._state("failed", repr(exc))
            self._finish(exc)

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
                    version = error.metadata.get("ring_version", "")
                    self._ring_version = int(version) if version.isdigit() else 0
                    self._state("redirected", target or "ask the router")
                    continue
                if error.code in FATAL_CODES:
                    self._state("failed", str(error))
                    self._finish(error)
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
            self._take(ChatMessage.from_pb(pb))
        if reply.inbox_cursor and cursor_key(reply.inbox_cursor) > cursor_key(self.cursor):
            self.cursor = reply.inbox_cursor
            self._cursors.save(self._user_id, self.device_id, self.cursor)

    def _take(self, message: ChatMessage) -> None:
        if message.message_id in self._seen:
            return
        self._seen[message.message_id] = None
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)
        self._inbox.put_nowait(message)

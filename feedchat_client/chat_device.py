"""What a chat device is on either transport: its inbox, cursor and background task.

:class:`ChatDevice` is the part :class:`~feedchat_client.chat_stream.ChatConnection`
(one ``Connect`` stream) and :class:`~feedchat_client.chat_poll.ChatPoller` (unary long
polls) share: the task that runs the transport's loop (``async with``, ``close()``), every
inbox message handed over once (de-duplicated by message id in a bounded window) through
``messages()`` and ``next_message()``, the cursor that only moves forward and is saved in a
:class:`~feedchat_client.cursors.CursorStore`, and the ``on_state`` progress callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Required, Self, TypedDict

import grpc

from feedchat_client.backoff import Backoff
from feedchat_client.cursors import CursorStore, cursor_key
from feedchat_client.errors import FeedchatClientError
from feedchat_client.models import ChatMessage
from feedchat_client.rpc import ServiceClient

logger = logging.getLogger(__name__)

StateCallback = Callable[[str, str], None]
"""``on_state(state, detail)`` with state one of "routing", "connecting", "connected",
"redirected", "moved", "reconnecting", "failed" — for progress output and logs."""

FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
RETRYABLE_SEND_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})


class ConnectionClosed(FeedchatClientError):
    """The connection was closed (or failed for good) before the operation finished."""


class DeviceOptions(TypedDict, total=False):
    """The options every chat device takes (keywords of its constructor)."""

    cursors: Required[CursorStore]
    """Where the inbox cursor is kept between runs."""
    backoff: Required[Backoff]
    """Delays between attempts after a failure."""
    on_state: StateCallback | None
    first_address: str | None
    """The chat server tried first (skips the router; redirects are followed)."""
    dedupe_window: int
    """Message ids remembered to drop repeats (10,000)."""
    max_redirects: int
    """Redirects followed in a row before asking the router again (5)."""


def ring_version(metadata: Mapping[str, str]) -> int:
    """The ring version an ErrorInfo names (0 when absent or malformed)."""
    text = metadata.get("ring_version", "")
    return int(text) if text.isdigit() else 0


class ChatDevice:
    """A device's inbox, fed by the loop a subclass runs in :meth:`_loop` (see the
    module). ``cursor``, ``address``, ``instance``, ``redirects`` and
    ``duplicates_dropped`` say where it is."""

    _kind = "chat device"
    """What the logs and errors call it."""

    def __init__(self, client: ServiceClient, device_id: str, options: DeviceOptions) -> None:
        """``client``: the session's client the device calls through (its transport and
        tokens)."""
        self._transport = client.transport
        self._session = client.session
        self.device_id = device_id
        self._cursors = options["cursors"]
        self.backoff = options["backoff"]
        self._on_state = options.get("on_state")
        self._first_address = options.get("first_address")
        self._dedupe_window = options.get("dedupe_window", 10_000)
        self._max_redirects = options.get("max_redirects", 5)
        self._user_id = 0
        self.cursor = ""
        self.address = ""
        self.instance = ""
        self.redirects = 0
        self.duplicates_dropped = 0
        self._ring_version = 0
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._inbox: asyncio.Queue[ChatMessage | None] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        self._user_id = self._session.user_id
        self.cursor = self._cursors.load(self._user_id, self.device_id)
        self._task = asyncio.create_task(self._run(), name=f"{self._kind} {self.device_id}")
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the loop; what waits on the device ends with :class:`ConnectionClosed`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        if self._done.is_set():
            return
        self.error = error
        self._done.set()
        self._connected.clear()
        self._ended(error)
        self._inbox.put_nowait(None)

    def _give_up(self, error: BaseException) -> None:
        """End the device for good (a refusal no retry can change)."""
        self._state("failed", str(error))
        self._finish(error)

    def _ended(self, error: BaseException | None) -> None:
        """What a subclass fails when the device ends (``error`` None: closed)."""

    def _closed(self) -> BaseException:
        return self.error or ConnectionClosed(f"{self._kind} closed")

    def _state(self, state: str, detail: str) -> None:
        logger.debug("%s %s: %s %s", self._kind, self.device_id, state, detail)
        if self._on_state is not None:
            self._on_state(state, detail)

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug or NotLoggedIn: end visibly, not silently
            logger.exception("%s %s failed", self._kind, self.device_id)
            self._state("failed", repr(exc))
            self._finish(exc)

    async def _loop(self) -> None:
        raise NotImplementedError

    # -- the application's side -----------------------------------------------------------

    async def messages(self) -> AsyncIterator[ChatMessage]:
        """Every inbox message once, until the device ends."""
        while True:
            message = await self._inbox.get()
            if message is None:
                self._inbox.put_nowait(None)  # let other readers end too
                if self.error is not None:
                    raise self.error
                return
            yield message

    async def next_message(self, timeout: float | None = None) -> ChatMessage:  # noqa: ASYNC109
        """The next message (TimeoutError after ``timeout``; ConnectionClosed at the end)."""
        message = await asyncio.wait_for(self._inbox.get(), timeout)
        if message is None:
            self._inbox.put_nowait(None)
            raise self._closed()
        return message

    # -- the transport's side -----------------------------------------------------------

    def _advance(self, cursor: str) -> bool:
        """Move the cursor to ``cursor`` (and save it) if that is forward; whether it was."""
        if not cursor or cursor_key(cursor) <= cursor_key(self.cursor):
            return False
        self.cursor = cursor
        self._cursors.save(self._user_id, self.device_id, cursor)
        return True

    def _deliver(self, message: ChatMessage) -> None:
        """Hand ``message`` to the application unless it was handed over already."""
        if message.message_id in self._seen:
            self.duplicates_dropped += 1
            return
        self._seen[message.message_id] = None
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)
        self._inbox.put_nowait(message)

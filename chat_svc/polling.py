"""The unary chat path, for clients that cannot hold a bidirectional stream: a unary send
and a long-poll inbox.

Sending is the stream's send (:meth:`chat_svc.delivery.Delivery.send`, then
:meth:`~chat_svc.delivery.Delivery.dispatch`), so dedup, rate limit and membership are
the same on both paths and any chat server answers.

A poll is served by the chat server that owns the user on the ring, like a Connect
stream, because that is where every server pushes the user's inbox entries: a poll held
there wakes as soon as a message for the user is stored anywhere. A poll that reaches
another server is refused at once with the owner (WRONG_CHAT_SERVER), so it never waits
out its timeout where no push will come. While held, the poll is registered in the
:class:`~chat_svc.connections.ConnectionHub` as a device stream, registered *before* the
inbox is read (so nothing stored in between is missed), and a ring change or a drain
closes it like any stream: the poll then ends at once with WRONG_CHAT_SERVER naming the
new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from chat_svc.connections import DeviceStream, StreamClosed
from chat_svc.delivery import Delivery
from chat_svc.model import (
    ZERO_CURSOR,
    Draft,
    InboxEntry,
    Reconnect,
    SendOutcome,
    StoredMessage,
    parse_cursor,
)
from chat_svc.poll_presence import PollPresence
from chat_svc.sessions import (
    MAX_DEVICE_ID,
    Sessions,
    check_cursor,
    owner_reconnect,
    wrong_server,
)
from feedchat_runtime.errors import InvalidArgument
from feedchat_runtime.pages import page_size

POLL_GAP = 5.0
"""Seconds after a poll ends during which its user counts as connected (the next poll
reads what arrives meanwhile from the inbox; no notification is queued for it)."""
ACKED_MAX = 100_000
"""Devices whose last acked cursor this server remembers (see ``UnaryChat._ack``)."""
DEFAULT_PAGE = 100
MAX_PAGE = 500


@dataclass(frozen=True)
class PollPage:
    """One answer to a poll."""

    messages: list[StoredMessage]
    cursor: str
    more: bool
    instance: str
    ring_version: int


class UnaryChat:
    """SendMessage and PollInbox in domain terms."""

    def __init__(
        self,
        sessions: Sessions,
        delivery: Delivery,
        presence: PollPresence,
        default_wait: float = 25.0,
        max_wait: float = 60.0,
    ) -> None:
        """``default_wait``: seconds a poll naming no wait is held; ``max_wait``: the
        longest hold (a longer wait is shortened to it)."""
        self._sessions = sessions
        self._delivery = delivery
        self._presence = presence
        self.default_wait = default_wait
        self.max_wait = max_wait
        self._acked: dict[tuple[int, str], str] = {}

    async def send(self, sender_id: int, draft: Draft) -> SendOutcome:
        """Store a message or channel event durably (the stream's send), then append it to
        the recipients' inboxes and push; returns once the appends are done (or failed:
        the claim finishes them), so the caller's next poll sees its own message, as on
        the stream."""
        outcome = await self._delivery.submit(sender_id, draft)
        fanout = self._delivery.dispatch(outcome)
        if fanout is not None:
            with contextlib.suppress(Exception):  # logged by dispatch
                await asyncio.shield(fanout)
        return outcome

    async def poll(
        self,
        user_id: int,
        device_id: str,
        cursor: str,
        wait: float | None,
        ring_version: int = 0,
        max_messages: int = 0,
    ) -> PollPage:
        if not 0 < len(device_id) <= MAX_DEVICE_ID:
            raise InvalidArgument.field("device_id", f"must be 1..{MAX_DEVICE_ID} characters")
        count = page_size(max_messages, DEFAULT_PAGE, MAX_PAGE)
        if wait is None:
            wait = self.default_wait
        if wait < 0:
            raise InvalidArgument.field("wait", "must not be negative")
        wait = min(wait, self.max_wait)
        s = self._sessions
        store = s.store
        if cursor:
            check_cursor(cursor, "inbox_cursor")
            await s.check_handed_out(user_id, cursor, "inbox_cursor")
        await s.settle(user_id, ring_version)
        # Ownership check and registration with no await in between (as for Connect): a
        # ring change after this point finds the poll registered and ends it.
        if s.draining():
            raise wrong_server(owner_reconnect(s.ring.ring.without(s.instance), user_id))
        s.check_owner(user_id)
        stream = DeviceStream(user_id, device_id, s.queue_capacity)
        s.hub.register(stream)
        self._presence.hold(user_id, device_id)
        try:
            if not cursor:
                cursor = await store.device_cursor(user_id, device_id) or ZERO_CURSOR
                page = await store.read_inbox(user_id, cursor, count + 1)
            else:  # the cursor acks; the ack and the read are independent
                _, page = await asyncio.gather(
                    self._ack(user_id, device_id, cursor),
                    store.read_inbox(user_id, cursor, count + 1),
                )
            if not page and wait > 0:
                page = await self._hold(stream, cursor, count + 1, wait)
        finally:
            s.hub.unregister(stream)
            s.hub.linger(user_id, POLL_GAP)
            self._presence.release(user_id, device_id)
        more = len(page) > count
        page = page[:count]
        return PollPage(
            page,
            page[-1].inbox_cursor if page else cursor,
            more,
            s.instance,
            s.ring.ring.version,
        )

    async def _ack(self, user_id: int, device_id: str, cursor: str) -> None:
        """The device has everything up to ``cursor``: save it (forward only) and send
        DELIVERED receipts for what it newly covers.

        The cursor this server last saw acked for the device is remembered (its polls all
        land here, on its owner), so a poll costs no read of the saved cursor; after a miss
        (the first poll here, or forgotten) it is read from Redis. A stale memory only
        repeats a few best-effort receipts: saving never moves a cursor back."""
        key = (user_id, device_id)
        previous = self._acked.pop(key, None)
        if previous is None:
            previous = await self._sessions.store.device_cursor(user_id, device_id)
        if previous is not None and parse_cursor(cursor) <= parse_cursor(previous):
            self._remember(key, previous)
            return
        self._remember(key, cursor)
        await self._delivery.acked(user_id, device_id, previous or ZERO_CURSOR, cursor)

    def _remember(self, key: tuple[int, str], cursor: str) -> None:
        self._acked[key] = cursor  # newest last: the oldest go first past the bound
        if len(self._acked) > ACKED_MAX:
            del self._acked[next(iter(self._acked))]

    async def _hold(
        self, stream: DeviceStream, cursor: str, count: int, wait: float
    ) -> list[StoredMessage]:
        """Wait for an inbox entry after ``cursor`` (read from the inbox, so in inbox order
        and with nothing skipped), at most ``wait`` seconds; [] when none came."""
        store = self._sessions.store
        try:
            async with asyncio.timeout(wait):
                while True:
                    try:
                        item = await stream.take()
                    except StreamClosed:
                        terminal = stream.terminal
                        if isinstance(terminal, Reconnect):
                            raise wrong_server(terminal) from None
                        assert terminal is not None
                        raise terminal from None
                    if isinstance(item, InboxEntry) and parse_cursor(
                        item.message.inbox_cursor
                    ) > parse_cursor(cursor):
                        page = await store.read_inbox(stream.user_id, cursor, count)
                        if page:
                            return page
        except TimeoutError:
            return []

"""The delivery path: validate → Snowflake id → persist → ack → push to owners → notify.

Durable before ack: :meth:`Delivery.send` returns only after the one store script has
written the channel history, every recipient's inbox and the dedup record; the caller acks
the sender with what it returns. Pushing to devices happens after, and may fail without
loss: every device resyncs from its inbox cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from chat_svc.connections import ConnectionHub
from chat_svc.model import (
    InboxEntry,
    Push,
    PushEvent,
    Receipt,
    SendOutcome,
    TypingEvent,
    parse_cursor,
)
from chat_svc.peer import deliver_local
from chat_svc.store import ChatStore
from feedchat_runtime.errors import InvalidArgument, PermissionDenied
from feedchat_runtime.snowflake import SnowflakeGenerator
from feedchat_runtime.text import TextRule
from router.ring import RingWatch

logger = logging.getLogger(__name__)

Forward = Callable[[str, Sequence[Push]], "asyncio.Future[list[int]]"]
"""Sends pushes to the chat server at an address; resolves to users with no live device."""

MAX_CLIENT_MSG_ID = 64


class Delivery:
    """Sending messages and routing pushes to whichever chat server owns each user."""

    def __init__(
        self,
        *,
        store: ChatStore,
        hub: ConnectionHub,
        ring: RingWatch,
        instance: str,
        ids: SnowflakeGenerator,
        forward: Forward,
        max_message_chars: int,
        send_rate: float,
        send_burst: int,
    ) -> None:
        self.store = store
        self.hub = hub
        self.ring = ring
        self.instance = instance
        self.ids = ids
        self.forward = forward
        self.max_message_chars = max_message_chars
        self.message_text = TextRule("text", max_message_chars, "MESSAGE", multiline=True)
        self.send_rate = send_rate
        self.send_burst = send_burst
        self._tasks: set[asyncio.Task[None]] = set()

    def validate_send(self, client_msg_id: str, channel_id: int, text: str) -> None:
        if not 0 < len(client_msg_id) <= MAX_CLIENT_MSG_ID:
            raise InvalidArgument.field(
                "client_msg_id", f"must be 1..{MAX_CLIENT_MSG_ID} characters")
        if channel_id <= 0:
            raise InvalidArgument.field("channel_id", "is required")
        self.message_text.check(text)

    async def send(
        self, sender_id: int, client_msg_id: str, channel_id: int, text: str
    ) -> SendOutcome:
        """Store a message durably (or return the original for a retried client_msg_id)."""
        self.validate_send(client_msg_id, channel_id, text)
        # Membership is checked, and the recipients read, inside the store script.
        message_id = self.ids.next_id()
        return await self.store.store_message(
            sender_id=sender_id, channel_id=channel_id, message_id=message_id,
            client_msg_id=client_msg_id, text=text, created_ms=time.time_ns() // 1_000_000,
            rate=self.send_rate, burst=self.send_burst,
        )

    def dispatch(self, outcome: SendOutcome) -> None:
        """Push a fresh message to its recipients (after the ack), without waiting.

        Local devices get it at once; remote owners through the (coalescing) peer client,
        whose answer says who was offline; they are queued for notify_svc.
        """
        if outcome.duplicate or not outcome.entries:
            return
        offline, remote = self._route([Push(e.user_id, e) for e in outcome.entries])
        if not remote:
            self._notify_offline(outcome, offline)
            return
        gathered = self._forward_all(remote)

        def forwarded(future: asyncio.Future[list[list[int] | BaseException]]) -> None:
            if not future.cancelled():
                self._notify_offline(
                    outcome, offline | self._offline_from(remote, future.result()))

        gathered.add_done_callback(forwarded)

    def _notify_offline(self, outcome: SendOutcome, offline: set[int]) -> None:
        offline.discard(outcome.message.sender_id)
        if offline:
            self._spawn(self._enqueue(outcome, sorted(offline)))

    async def _enqueue(self, outcome: SendOutcome, users: list[int]) -> None:
        try:
            await self.store.enqueue_notifications(outcome.message, users)
        except Exception:
            logger.exception("could not queue notifications for %s", outcome.message.message_id)

    def _route(self, pushes: Sequence[Push]) -> tuple[set[int], dict[str, list[Push]]]:
        """Hand local pushes to devices now; (users offline so far, remote batches)."""
        ring = self.ring.ring
        remote: dict[str, list[Push]] = defaultdict(list)
        local: list[Push] = []
        unowned: set[int] = set()
        for push in pushes:
            owner = ring.owner(push.user_id)
            if owner is None:
                if isinstance(push.event, InboxEntry):
                    unowned.add(push.user_id)
            elif owner.instance == self.instance:
                local.append(push)
            else:
                remote[owner.address].append(push)
        return set(deliver_local(self.hub, local)) | unowned, remote

    def _forward_all(
        self, remote: dict[str, list[Push]]
    ) -> asyncio.Future[list[list[int] | BaseException]]:
        return asyncio.gather(
            *(self.forward(address, batch) for address, batch in remote.items()),
            return_exceptions=True,
        )

    @staticmethod
    def _offline_from(
        remote: dict[str, list[Push]], results: list[list[int] | BaseException]
    ) -> set[int]:
        """Offline users per the peers' answers; an unreachable peer's users all count."""
        offline: set[int] = set()
        for (address, batch), result in zip(remote.items(), results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("push to %s failed: %s", address, result)
                offline.update(p.user_id for p in batch if isinstance(p.event, InboxEntry))
            else:
                offline.update(result)
        return offline

    async def push(self, pushes: Sequence[Push]) -> set[int]:
        """Route pushes to each user's owner; the users of inbox entries found offline."""
        offline, remote = self._route(pushes)
        if remote:
            offline |= self._offline_from(remote, await self._forward_all(remote))
        return offline

    def push_events(self, user_ids: Sequence[int], event: PushEvent) -> None:
        """Fire-and-forget ephemeral events (receipts, typing) to users' live devices."""
        if user_ids:
            self._spawn(self._push_quietly([Push(uid, event) for uid in user_ids]))

    async def _push_quietly(self, pushes: list[Push]) -> None:
        await self.push(pushes)

    async def delivered(
        self, user_id: int, device_id: str, after: str, upto: str, limit: int = 1000
    ) -> None:
        """A device acked (after, upto]: DELIVERED receipts to the senders of those entries."""
        entries = await self.store.read_inbox(user_id, after, limit)
        by_sender: dict[int, list[Receipt]] = defaultdict(list)
        for m in entries:
            if _after(m.inbox_cursor, upto):
                break
            if m.sender_id != user_id:
                by_sender[m.sender_id].append(Receipt(
                    "delivered", m.channel_id, m.message_id, m.seq, user_id, device_id,
                    m.client_msg_id))
        pushes = [Push(s, r) for s, receipts in by_sender.items() for r in receipts]
        if pushes:
            self._spawn(self._push_quietly(pushes))

    async def read(self, user_id: int, channel_id: int, seq: int) -> None:
        """Record a read marker and tell the channel's other members."""
        members = await self.store.members(channel_id)
        if user_id not in members:
            raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
        await self.store.save_read(user_id, channel_id, seq)
        receipt = Receipt("read", channel_id, 0, seq, user_id)
        self.push_events([m for m in members if m != user_id], receipt)

    async def typing(self, user_id: int, channel_id: int) -> None:
        members = await self.store.members(channel_id)
        if user_id not in members:
            raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
        self.push_events([m for m in members if m != user_id], TypingEvent(channel_id, user_id))

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                logger.exception("background push failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for pushes still in flight (bounded by the peer timeout)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _after(cursor: str, bound: str) -> bool:
    return parse_cursor(cursor) > parse_cursor(bound)

"""The delivery path: validate → Snowflake id → channel step → ack → inbox appends → push
to owners → notify.

Durable before ack: :meth:`Delivery.send` returns only after the channel step has stored
the message in its channel's history with a pending-fanout record of its recipients (and,
with replica acks on, a replica confirmed it); the caller acks the sender with what it
returns. :meth:`Delivery.dispatch` then appends it to the recipients' inboxes and pushes
the entries to their devices. If that does not finish (this server dies, an append
fails), another chat server claims the pending record and dispatches it again
(:mod:`chat_svc.claims`); appends are idempotent, so each inbox gets the message once.

Pushes converge: a push whose Deliver call fails (the owner's server restarted and our
channel to it sits in gRPC's reconnect backoff, or it is down for a moment) is retried
with a fresh channel (see :class:`~chat_svc.peer.PeerClient`) and the owner re-resolved
from the current ring each time, until a chat server answers for the user or
``retry_window`` seconds have passed. Only then is the user treated as offline (queued for
notify_svc). Without this a connected, synced device could miss an acked message until a
later one in the same inbox carried it along.

Rings converge, pushes follow: while chat servers' rings disagree (a server joined or left
a moment ago), a push can reach a server that has no device for the user although the
device is already synced on its new owner. So inbox entries found offline are remembered
for ``RECENT_OFFLINE`` seconds, and when this server's ring changes, those whose owner
changed are pushed again to the new owner (a device that already has one drops it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from chat_svc.connections import ConnectionHub
from chat_svc.model import (
    DELETE,
    EDIT,
    EVENT_KINDS,
    MESSAGE,
    Draft,
    InboxEntry,
    Push,
    PushEvent,
    Receipt,
    SendOutcome,
    TypingEvent,
)
from chat_svc.peer import deliver_local
from chat_svc.store import ChatStore, Fanned
from feedchat_runtime.clock import wall_ms
from feedchat_runtime.errors import InvalidArgument, PermissionDenied
from feedchat_runtime.ring import Ring, RingWatch
from feedchat_runtime.snowflake import SnowflakeGenerator
from feedchat_runtime.text import TextRule

logger = logging.getLogger(__name__)

Forward = Callable[[str, Sequence[Push]], "asyncio.Future[list[int]]"]
"""Sends pushes to the chat server at an address; resolves to users with no live device."""

MAX_CLIENT_MSG_ID = 64
MAX_EMOJI = 16
"""Longest reaction, in characters."""
EMOJI = TextRule("emoji", MAX_EMOJI, "EMOJI")
MAX_ID = (1 << 64) - 1
RETRY_FIRST = 0.05
"""Seconds before the first retry of a failed push; doubled per attempt up to RETRY_CAP."""
RETRY_CAP = 0.5
"""Longest pause between retries of a failed push (bounds how late a push lands once its
owner answers again)."""
RECENT_OFFLINE = 5.0
"""Seconds an inbox entry found offline is kept for a re-push after a ring change."""
RECENT_OFFLINE_MAX = 10_000
"""Most such entries kept (the oldest go first)."""


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
        retry_window: float = 15.0,
        group_owner: Callable[[int], Awaitable[int]] | None = None,
        stop_window: float = 2.0,
    ) -> None:
        """``group_owner`` reads a channel's owner (0: none) from the record: a group's
        owner may delete anyone's messages; ``stop_window``: how long :meth:`close` lets
        the dispatches in flight finish (the chat server passes its peer timeout)."""
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
        self.retry_window = retry_window
        self.group_owner = group_owner
        self.stop_window = stop_window
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Future[Any]] = set()
        """Appends of dispatched messages, and forwards of their entries, not yet done
        (what follows them runs in :attr:`_tasks`)."""
        self._recent: deque[tuple[float, Push]] = deque(maxlen=RECENT_OFFLINE_MAX)

    def validate(self, draft: Draft) -> None:
        """Refuse a malformed send or event (INVALID_ARGUMENT, naming the field)."""
        if not 0 < len(draft.client_msg_id) <= MAX_CLIENT_MSG_ID:
            raise InvalidArgument.field(
                "client_msg_id", f"must be 1..{MAX_CLIENT_MSG_ID} characters"
            )
        if draft.channel_id <= 0:
            raise InvalidArgument.field("channel_id", "is required")
        if not 0 <= draft.target_id <= MAX_ID:
            raise InvalidArgument.field("message_id", "must be a message id")
        if draft.kind == MESSAGE:
            self.message_text.check(draft.text)
            return
        if draft.kind not in EVENT_KINDS:
            raise InvalidArgument.field("frame", f"unknown event kind {draft.kind!r}")
        if not draft.target_id:
            raise InvalidArgument.field("message_id", "is required")
        if draft.kind == EDIT:
            self.message_text.check(draft.text)
        elif draft.kind != DELETE:
            EMOJI.check(draft.emoji)
            if any(c.isspace() for c in draft.emoji):
                raise InvalidArgument.field(
                    "emoji", "must not contain whitespace", reason="EMOJI_INVALID_CHARACTERS"
                )

    async def send(
        self, sender_id: int, client_msg_id: str, channel_id: int, text: str, reply_to: int = 0
    ) -> SendOutcome:
        """Store a message durably (or return the original for a retried client_msg_id)."""
        return await self.submit(
            sender_id, Draft(client_msg_id, channel_id, text, MESSAGE, reply_to)
        )

    async def submit(self, sender_id: int, draft: Draft) -> SendOutcome:
        """Store a message or a channel event durably (or return the original for a
        retried client_msg_id). Membership, the target and the sender's right to act on
        it are checked, and the recipients read, inside the channel step; a delete of
        someone else's message is tried again as the group's owner when the sender is."""
        self.validate(draft)
        message_id = self.ids.next_id()
        created_ms = wall_ms()

        async def store(owner: bool) -> SendOutcome:
            return await self.store.store_message(
                sender_id=sender_id,
                channel_id=draft.channel_id,
                message_id=message_id,
                client_msg_id=draft.client_msg_id,
                text=draft.text,
                created_ms=created_ms,
                rate=self.send_rate,
                burst=self.send_burst,
                kind=draft.kind,
                target_id=draft.target_id,
                emoji=draft.emoji,
                owner=owner,
            )

        try:
            return await store(False)
        except PermissionDenied as refused:
            if (
                refused.reason != "NOT_MESSAGE_SENDER"
                or draft.kind != DELETE
                or self.group_owner is None
                or await self.group_owner(draft.channel_id) != sender_id
            ):
                raise
            return await store(True)

    def dispatch(self, outcome: SendOutcome) -> asyncio.Future[Fanned] | None:
        """Append a stored message to its recipients' inboxes and push the entries (after
        the ack); the appends in progress (None when there are none to make: a duplicate
        whose fanout is done). Appends are coalesced with other dispatches of the same
        tick; a failed fanout is logged and left to the claim of its pending record."""
        if not outcome.recipients:
            return None
        message = outcome.message
        appended = self.store.submit_fan_out(message, outcome.recipients)

        def push(future: asyncio.Future[Fanned]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            fanned = Fanned([], error) if error is not None else future.result()
            if fanned.error is not None:
                logger.warning(
                    "fanout of message %s failed (its pending record will be claimed): %s",
                    message.message_id,
                    fanned.error,
                )
            self.push_entries(SendOutcome(message, False, fanned.entries))

        appended.add_done_callback(push)
        self._track(appended)  # after ``push``: its forwards are tracked before this goes
        return appended

    def push_entries(self, outcome: SendOutcome) -> None:
        """Push a fanned-out message's inbox entries to their users' devices.

        Local devices get it at once; remote owners through the (coalescing) peer client,
        whose answer says who was offline; they are queued for notify_svc. The common case
        (every peer answers) needs no task; a failed forward continues in a retry task.
        """
        if not outcome.entries:
            return
        offline, remote = self._route([Push(e.user_id, e) for e in outcome.entries])
        if not remote:
            self._notify_offline(outcome, offline)
            return
        gathered = self._forward_all(remote)

        def forwarded(future: asyncio.Future[list[list[int] | BaseException]]) -> None:
            if future.cancelled():
                return
            answered, failed = self._settle(remote, future.result())
            if failed:
                self._spawn(self._converge_then_notify(outcome, offline | answered, failed))
            else:
                self._notify_offline(outcome, offline | answered)

        gathered.add_done_callback(forwarded)
        self._track(gathered)  # after ``forwarded``, which may spawn a retry task

    async def _converge_then_notify(
        self, outcome: SendOutcome, offline: set[int], failed: list[Push]
    ) -> None:
        self._notify_offline(outcome, offline | await self._retry(failed))

    def _notify_offline(self, outcome: SendOutcome, offline: set[int]) -> None:
        if offline:
            now = time.monotonic()
            self._recent.extend(
                (now, Push(e.user_id, e)) for e in outcome.entries if e.user_id in offline
            )
        offline.discard(outcome.message.sender_id)
        if offline and outcome.message.event is None:  # events notify nobody
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
        """Forward each address's pushes; one answer per address (an exception where its
        call failed). One address (the common 1:1 case) needs no gather."""
        if len(remote) != 1:
            return asyncio.gather(
                *(self.forward(address, batch) for address, batch in remote.items()),
                return_exceptions=True,
            )
        ((address, batch),) = remote.items()
        forwarded = self.forward(address, batch)
        answer: asyncio.Future[list[list[int] | BaseException]] = (
            asyncio.get_running_loop().create_future()
        )

        def done(future: asyncio.Future[list[int]]) -> None:
            if answer.done():  # the caller stopped waiting
                return
            if future.cancelled():
                answer.cancel()
            else:
                error = future.exception()
                answer.set_result([error if error is not None else future.result()])

        forwarded.add_done_callback(done)
        return answer

    @staticmethod
    def _settle(
        remote: dict[str, list[Push]], results: list[list[int] | BaseException]
    ) -> tuple[set[int], list[Push]]:
        """(offline users per the peers that answered, pushes whose peer did not answer)."""
        offline: set[int] = set()
        failed: list[Push] = []
        for (address, batch), result in zip(remote.items(), results, strict=True):
            if isinstance(result, BaseException):
                logger.debug("push to %s failed (will retry): %s", address, result)
                failed.extend(batch)
            else:
                offline.update(result)
        return offline, failed

    async def _retry(self, pushes: list[Push]) -> set[int]:
        """Re-route failed pushes until each lands on its user's owner of the moment, or
        the retry window ends; the users of inbox entries found (or left) offline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_window
        delay = RETRY_FIRST
        offline: set[int] = set()
        while pushes:
            if self._closing or loop.time() >= deadline:
                logger.warning(
                    "gave up pushing to %s users after %.1fs; treating as offline",
                    len({p.user_id for p in pushes}),
                    self.retry_window,
                )
                offline.update(p.user_id for p in pushes if isinstance(p.event, InboxEntry))
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)
            local_offline, remote = self._route(pushes)  # the ring may have moved them
            offline |= local_offline
            answered, pushes = self._settle(remote, await self._forward_all(remote))
            offline |= answered
        return offline

    def ring_changed(self, old: Ring, new: Ring) -> None:
        """Push recent offline entries again whose owner the ring change moved."""
        horizon = time.monotonic() - RECENT_OFFLINE
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        again = [
            push
            for _, push in self._recent
            if _instance(old, push.user_id) != _instance(new, push.user_id)
        ]
        if again:
            logger.info("ring change: pushing %s recent offline entries again", len(again))
            self._spawn(self._push_quietly(again))

    async def push(self, pushes: Sequence[Push]) -> set[int]:
        """Route pushes to each user's owner (retrying failures, see the module docstring);
        the users of inbox entries found offline."""
        offline, remote = self._route(pushes)
        if remote:
            answered, failed = self._settle(remote, await self._forward_all(remote))
            offline |= answered
            if failed:
                offline |= await self._retry(failed)
        return offline

    def push_events(self, user_ids: Sequence[int], event: PushEvent) -> None:
        """Fire-and-forget ephemeral events (receipts, typing) to users' live devices."""
        if user_ids:
            self._spawn(self._push_quietly([Push(uid, event) for uid in user_ids]))

    async def _push_quietly(self, pushes: list[Push]) -> None:
        await self.push(pushes)

    async def acked(
        self, user_id: int, device_id: str, after: str, upto: str, limit: int = 1000
    ) -> None:
        """A device acked (after, upto]: save its cursor and send DELIVERED receipts to the
        senders of those entries (one Redis round trip, shared with the acks of the same
        tick; the receipts of one ack go out as one push batch)."""
        entries = await self.store.acknowledge(user_id, device_id, after, upto, limit)
        pushes = [
            Push(
                m.sender_id,
                Receipt(
                    "delivered",
                    m.channel_id,
                    m.message_id,
                    m.seq,
                    user_id,
                    device_id,
                    m.client_msg_id,
                ),
            )
            for m in entries
            if m.sender_id != user_id and m.event is None  # receipts are for messages
        ]
        if pushes:
            self._spawn(self._push_quietly(pushes))

    async def read(self, user_id: int, channel_id: int, seq: int) -> None:
        """Move the read marker forward (clamped to the channel's last seq); when it moved,
        tell the channel's other members with a READ receipt up to the new marker."""
        members = await self.store.members(channel_id)
        if user_id not in members:
            raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
        moved, marker = await self.store.save_read(user_id, channel_id, seq)
        if moved:
            receipt = Receipt("read", channel_id, 0, marker, user_id)
            self.push_events([m for m in members if m != user_id], receipt)

    async def typing(self, user_id: int, channel_id: int) -> None:
        members = await self.store.members(channel_id)
        if user_id not in members:
            raise PermissionDenied("not a member of this channel", reason="NOT_A_MEMBER")
        self.push_events([m for m in members if m != user_id], TypingEvent(channel_id, user_id))

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)

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
        """Let the dispatches in flight finish for up to ``stop_window`` seconds: their
        inbox appends, then their pushes (a failed push is retried meanwhile), and the
        notifications of those found offline. Then stop retrying (the users of pushes
        still failing count as offline) and wait for the pushes still on the wire (each
        bounded by the peer timeout). Call it before the peer channels and Redis close:
        an acked message's push to another chat server is not cut off by the stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_window
        while (busy := self._inflight | self._tasks) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(busy, timeout=left)  # what finishes may start more: look again
        if self._inflight:
            logger.warning(
                "stopping with %s appends or pushes unfinished after %.1fs (a claim "
                "finishes an append; a device missing a push gets it at its next push)",
                len(self._inflight),
                self.stop_window,
            )
        self._closing = True
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _instance(ring: Ring, user_id: int) -> str:
    owner = ring.owner(user_id)
    return owner.instance if owner is not None else ""

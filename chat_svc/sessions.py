"""One device's Connect stream in domain terms: ownership, catch-up, live, and how it ends.

Catch-up without a race: the device's :class:`DeviceStream` is registered (so live pushes
start queueing) *before* the backlog is read. Every live inbox entry carries the id of the
entry before it in the same inbox; the session keeps ``position`` (the last entry sent):

- an entry at or before ``position`` was already replayed: dropped;
- an entry whose predecessor is at or before ``position`` follows on directly: sent;
- otherwise something between is still in flight or was lost (a push that raced another,
  a restart): the gap (position, entry] is read from the inbox stream and sent in order.

So each device sees its inbox exactly once, in inbox order, whatever order pushes arrive in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence

from chat_svc.connections import ConnectionHub, DeviceStream, StreamClosed
from chat_svc.delivery import Delivery
from chat_svc.model import (
    ZERO_CURSOR,
    Draft,
    InboxEntry,
    OutFrame,
    Reconnect,
    SendAck,
    SendFailure,
    SendOutcome,
    StoredMessage,
    SyncComplete,
    parse_cursor,
)
from chat_svc.store import ChatStore, Fanned
from feedchat_runtime.clock import wall_ms
from feedchat_runtime.errors import (
    FailedPrecondition,
    FeedchatError,
    InvalidArgument,
    Unavailable,
)
from feedchat_runtime.ring import Ring, RingWatch
from feedchat_runtime.status import translate

logger = logging.getLogger(__name__)

REPLAY_PAGE = 500
FUTURE_SLACK_MS = 1000
"""A client cursor up to this far ahead of this server's clock is taken unchecked."""
MAX_DEVICE_ID = 64
MOVE_FLUSH = 3.0
"""Seconds a moved stream waits for its send in flight, so the ack goes out before the
``reconnect`` frame (a Redis call is bounded by --redis-timeout, 2 s by default)."""


MAX_BATCH = 64
"""Most frames sent as one batch frame (to a device that asked for batches in its hello):
64 messages of at most 16 KB each stay far below gRPC's 4 MiB message limit."""
MAX_SEND_BATCH = 64
"""Most sends in one ``send_batch`` frame (their replies fit one batch frame)."""
OWN_ECHO_MAX = 1024
"""Most sends a stream that omits its own echo remembers until their inbox entry passes
(the oldest are forgotten first: their entry is then simply sent, as without the option)."""


MAX_STREAM_PART = (1 << 64) - 1
"""Largest part of a Redis stream id."""


def check_cursor(cursor: str, field: str) -> None:
    """A client's cursor must be a stream id Redis accepts after ``(`` (so not the top id)."""
    try:
        ms, seq = parse_cursor(cursor)
    except ValueError:
        ms = seq = MAX_STREAM_PART
    if not cursor.isascii() or max(ms, seq) > MAX_STREAM_PART or ms == seq == MAX_STREAM_PART:
        raise InvalidArgument.field(
            field, "must be an inbox cursor like 1712345678901-0", reason="BAD_CURSOR"
        )


def wrong_server(owner: Reconnect) -> FailedPrecondition:
    """FAILED_PRECONDITION WRONG_CHAT_SERVER naming where the user lives (``owner``)."""
    metadata = {"ring_version": str(owner.ring_version)}
    if owner.instance:
        metadata.update(owner_address=owner.address, owner_instance=owner.instance)
    return FailedPrecondition(
        "this chat server does not own the user; connect to the owner",
        reason="WRONG_CHAT_SERVER",
        metadata=metadata,
    )


class Sessions:
    """Opens and runs device sessions on this chat server."""

    def __init__(
        self,
        *,
        store: ChatStore,
        hub: ConnectionHub,
        ring: RingWatch,
        delivery: Delivery,
        instance: str,
        queue_capacity: int,
        draining: Callable[[], bool] = lambda: False,
        ring_settle: float = 2.0,
    ) -> None:
        self.store = store
        self.hub = hub
        self.ring = ring
        self.delivery = delivery
        self.instance = instance
        self.queue_capacity = queue_capacity
        self.draining = draining
        self.ring_settle = ring_settle

    def check_owner(self, user_id: int) -> None:
        """FAILED_PRECONDITION with the owner's address unless this server owns the user."""
        ring = self.ring.ring
        owner = ring.owner(user_id)
        if owner is not None and owner.instance == self.instance:
            return
        raise wrong_server(owner_reconnect(ring, user_id))

    def _owns(self, ring: Ring, user_id: int) -> bool:
        owner = ring.owner(user_id)
        return owner is not None and owner.instance == self.instance

    async def settle(self, user_id: int, ring_version: int) -> None:
        """Before refusing a client, let our ring reach the version that sent it here.

        A joining server learns of itself from etcd like everyone else, and its peers may
        see it first and move clients to it; redirecting those back would bounce them
        between servers. So when the client names a ring version this server has never
        been at and our ring does not give us the user, wait (at most ``ring_settle``
        seconds) until it does, or until our ring has been at that version. A client with
        a version we already passed is stale: it is redirected at once.
        """

        def settled(ring: Ring) -> bool:
            return not ring_version or self.ring.seen(ring_version) or self._owns(ring, user_id)

        if not settled(self.ring.ring):
            with contextlib.suppress(TimeoutError):
                await self.ring.wait_for(settled, self.ring_settle)

    async def open(
        self,
        user_id: int,
        device_id: str,
        cursor: str,
        ring_version: int = 0,
        batch: bool = False,
        omit_own_echo: bool = False,
    ) -> Session:
        if not 0 < len(device_id) <= MAX_DEVICE_ID:
            raise InvalidArgument.field("hello.device_id", f"must be 1..{MAX_DEVICE_ID} characters")
        if cursor:
            check_cursor(cursor, "hello.inbox_cursor")
            await self.check_handed_out(user_id, cursor, "hello.inbox_cursor")
        else:
            cursor = await self.store.device_cursor(user_id, device_id) or ZERO_CURSOR
        await self.settle(user_id, ring_version)
        # Ownership check and registration with no await in between: a ring change after
        # this point finds the stream registered and moves it like any other.
        if self.draining():
            raise Unavailable(
                "this chat server is shutting down; ask the router again", reason="DRAINING"
            )
        self.check_owner(user_id)
        stream = DeviceStream(user_id, device_id, self.queue_capacity)
        self.hub.register(stream)
        return Session(self, stream, cursor, MAX_BATCH if batch else 1, omit_own_echo)

    async def check_handed_out(self, user_id: int, cursor: str, field: str) -> None:
        """Refuse a made-up cursor ahead of the inbox: acked, it would become the device's
        saved cursor and make it skip every message stored until then. Inbox ids come from
        Redis's clock, so only a cursor ahead of this server's clock (with some slack) is
        compared with the inbox's newest entry."""
        if parse_cursor(cursor)[0] <= wall_ms() + FUTURE_SLACK_MS:
            return
        if parse_cursor(cursor) > parse_cursor(await self.store.inbox_last(user_id)):
            raise InvalidArgument.field(
                field, "is after the newest inbox entry", reason="BAD_CURSOR"
            )

    def rebalance(self) -> int:
        """Send every stream whose user this server no longer owns to the new owner."""
        ring = self.ring.ring
        moved = {
            uid: reconnect
            for uid in self.hub.users()
            if (reconnect := owner_reconnect(ring, uid)).instance != self.instance
        }
        closed = self.hub.close_users(moved)
        if closed:
            logger.info("ring moved %s users (%s streams) away", len(moved), closed)
        return closed

    def drain(self) -> None:
        """Shutting down: send everyone to where they will live without this server."""
        ring = self.ring.ring.without(self.instance)
        self.hub.close_users({uid: owner_reconnect(ring, uid) for uid in self.hub.users()})


def owner_reconnect(ring: Ring, user_id: int) -> Reconnect:
    """Where ``user_id`` lives on ``ring`` (empty address and instance: nowhere)."""
    owner = ring.owner(user_id)
    return Reconnect(owner.address if owner else "", owner.instance if owner else "", ring.version)


class Session:
    """A registered device stream: produces its frames, takes its client frames."""

    def __init__(
        self,
        sessions: Sessions,
        stream: DeviceStream,
        cursor: str,
        batch_limit: int = 1,
        omit_own_echo: bool = False,
    ) -> None:
        self._s = sessions
        self.batch_limit = batch_limit
        """Most frames per yielded list (1: the device takes no batches)."""
        self._own: OrderedDict[tuple[int, str], None] | None = (
            OrderedDict() if omit_own_echo else None
        )
        """(channel, client_msg_id) of this stream's acked sends whose inbox entry has not
        passed yet; None: the device takes its own messages back like any other."""
        self.stream = stream
        self.user_id = stream.user_id
        self.device_id = stream.device_id
        self.position = cursor
        self.acked = cursor
        self.error: FeedchatError | None = None
        self._idle = asyncio.Event()  # no send in flight
        self._idle.set()

    def close(self) -> None:
        self._s.hub.unregister(self.stream)

    async def frames(self) -> AsyncIterator[list[OutFrame]]:
        """Backlog, SyncComplete, then live frames; ends after a Reconnect or sets error.

        Frames come in lists of at most ``batch_limit``: what was ready at the same time
        (a replay page, or every item queued when the stream was next ready to write); a
        list is never waited for beyond its first frame.
        """
        store = self._s.store
        limit = self.batch_limit
        replayed = 0
        while not self.stream.closed:  # moved or cut off mid-replay: stop early
            messages = await store.read_inbox(self.user_id, self.position, REPLAY_PAGE)
            replayed += len(messages)
            last = len(messages) < REPLAY_PAGE
            page: list[OutFrame] = self._without_own_echo(messages)
            if last:
                cursor = messages[-1].inbox_cursor if messages else self.position
                version = self._s.ring.ring.version
                page.append(SyncComplete(cursor, replayed, self._s.instance, version))
            for start in range(0, len(page), limit):
                chunk = page[start : start + limit]
                for frame in chunk:
                    if isinstance(frame, StoredMessage):
                        self.position = frame.inbox_cursor
                yield chunk
            if messages:  # own echoes left out of the page were passed too
                self.position = messages[-1].inbox_cursor
            if last:
                break
        while True:
            try:
                items = await self.stream.take_many(limit)
            except StreamClosed:
                terminal = self.stream.terminal
                if isinstance(terminal, Reconnect):
                    # moved: the send in flight (if any) and every queued reply go first
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(MOVE_FLUSH):
                            await self._idle.wait()
                    final: list[OutFrame] = [*self.stream.final_frames(), terminal]
                    for start in range(0, len(final), limit):
                        yield final[start : start + limit]
                elif terminal is not None:
                    self.error = terminal
                return
            out: list[OutFrame] = []
            for item in items:
                if not isinstance(item, InboxEntry):
                    out.append(item)
                    continue
                follows = self._follows(item)
                if follows is True:
                    self.position = item.message.inbox_cursor
                    if not self._own_echo(item.message):
                        out.append(item.message)
                elif follows is None:  # a gap before it: read (position, entry] from the inbox
                    upto = item.message.inbox_cursor
                    missing = await self._s.store.read_inbox_range(
                        self.user_id, self.position, upto
                    )
                    if missing:
                        self.position = missing[-1].inbox_cursor
                    out.extend(self._without_own_echo(missing))
            for start in range(0, len(out), limit):
                yield out[start : start + limit]

    def _own_echo(self, message: StoredMessage) -> bool:
        """Whether ``message`` is this stream's own send, which the device asked not to get
        back (it is then forgotten: the same entry never comes twice)."""
        own = self._own
        if not own or message.sender_id != self.user_id:
            return False
        key = (message.channel_id, message.client_msg_id)
        if key not in own:
            return False
        del own[key]
        return True

    def _without_own_echo(self, messages: list[StoredMessage]) -> list[OutFrame]:
        if not self._own:
            return list(messages)
        return [m for m in messages if not self._own_echo(m)]

    def _follows(self, entry: InboxEntry) -> bool | None:
        """True: send it next. False: already sent (drop). None: entries are missing."""
        here = parse_cursor(self.position)
        if parse_cursor(entry.message.inbox_cursor) <= here:
            return False
        return True if parse_cursor(entry.prev_cursor) <= here else None

    # -- client frames ------------------------------------------------------------------

    async def send(self, draft: Draft) -> None:
        """One message or channel event: see :meth:`send_many`."""
        await self.send_many([draft])

    async def send_many(self, drafts: Sequence[Draft]) -> None:
        """Store and ack (or refuse with a SendFailure frame, by client_msg_id) each
        message or channel event, then push them to their recipients. They go to Redis
        together (group commit, in order), and their replies are queued together once all
        are answered, in order.

        Once the stream is closed (moved or cut off) nothing more is stored: the device
        resends every send without a reply on its next stream.
        """
        if self.stream.closed:
            return
        self._idle.clear()
        try:
            if len(drafts) == 1:
                replies = [await self._store(drafts[0])]
            else:
                replies = await asyncio.gather(*(self._store(draft) for draft in drafts))
            fanouts = [self._reply(reply, outcome) for reply, outcome in replies]
        finally:
            self._idle.set()  # after the replies were offered: a move flushes them
        for fanout in fanouts:
            if fanout is not None:
                # The stream's next send waits for these inbox appends: a sender cannot
                # run ahead of its fanouts and flood its recipients' streams in bursts.
                # Shielded: a stream that ends meanwhile must not cancel the pushes.
                with contextlib.suppress(Exception):  # logged by dispatch; the claim ends it
                    await asyncio.shield(fanout)

    async def _store(self, draft: Draft) -> tuple[SendAck | SendFailure, SendOutcome | None]:
        """Store one draft durably: its reply, and the outcome to dispatch (None: refused)."""
        client_msg_id = draft.client_msg_id
        try:
            outcome = await self._s.delivery.submit(self.user_id, draft)
        except Exception as exc:
            error = translate(exc)
            if error is None:
                logger.exception("send failed")
                error = FeedchatError("internal error")
            return SendFailure(
                client_msg_id, error.code, error.reason, error.message, error.retry_after
            ), None
        return SendAck.of(client_msg_id, outcome), outcome

    def _reply(
        self, reply: SendAck | SendFailure, outcome: SendOutcome | None
    ) -> asyncio.Future[Fanned] | None:
        """Queue a send's reply; the fanout in progress, if the message was new."""
        if outcome is not None and self._own is not None:
            self._own[(outcome.message.channel_id, reply.client_msg_id)] = None
            if len(self._own) > OWN_ECHO_MAX:
                self._own.popitem(last=False)
        self.stream.offer(reply)
        return None if outcome is None else self._s.delivery.dispatch(outcome)

    async def ack(self, cursor: str) -> None:
        check_cursor(cursor, "ack.inbox_cursor")
        if parse_cursor(cursor) > parse_cursor(self.position):
            cursor = self.position  # never past what this stream has sent
        if parse_cursor(cursor) <= parse_cursor(self.acked):
            return
        previous, self.acked = self.acked, cursor
        await self._s.delivery.acked(self.user_id, self.device_id, previous, cursor)

    async def read(self, channel_id: int, seq: int) -> None:
        await self._s.delivery.read(self.user_id, channel_id, seq)

    async def typing(self, channel_id: int) -> None:
        await self._s.delivery.typing(self.user_id, channel_id)

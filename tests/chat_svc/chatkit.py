"""Test clients for chat servers: a device on a Connect stream, and cluster helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from chat_svc.app import ChatApp
from chat_svc.groups import Channels
from chat_svc.store import ChatStore
from chat_svc.store_channels import ChannelRecords
from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc
from feedchat_local.chat_process import chat_process
from feedchat_local.embedded import EmbeddedServer
from feedchat_runtime.auth import authority_from_config
from feedchat_runtime.postgres import open_database
from feedchat_runtime.registry import EtcdSession
from feedchat_runtime.ring import Ring, RingWatch
from feedchat_runtime.snowflake import SnowflakeGenerator
from tests.waiting import wait_until

AUTHORITY = authority_from_config("", "", dev=True)

StartCluster = Callable[..., Awaitable[list[ChatApp]]]
"""The ``chat_cluster`` fixture: ``await chat_cluster(n, **config)`` starts n servers."""
OpenDevice = Callable[..., Awaitable["Device"]]
"""The ``devices`` fixture: ``await devices(user_id, address, ...)`` opens a device."""


def token(user_id: int) -> str:
    return AUTHORITY.issue_access(user_id).token


def auth(user_id: int) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token(user_id)}"),)


def owner_of(apps: Sequence[ChatApp], user_id: int) -> ChatApp:
    ring = apps[0].ring.ring
    member = ring.owner(user_id)
    assert member is not None
    return next(a for a in apps if a.config.instance == member.instance)


async def open_direct(address: str, user: int, peer: int) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        reply: chat_pb2.OpenDirectChannelResponse = await stub.OpenDirectChannel(
            chat_pb2.OpenDirectChannelRequest(peer_user_id=peer), metadata=auth(user)
        )
        return reply.channel.channel_id


async def pair_across(
    apps: Sequence[ChatApp], devices: Any
) -> tuple[int, int, int, Device, Device]:
    """Alice owned by chat-0 and Bob by chat-1: (alice, bob, their direct channel, a synced
    device of each on its owner). ``devices`` is the fixture of that name."""
    alice, bob, channel = await alice_and_bob(apps)
    a = await devices(alice, apps[0].address)
    b = await devices(bob, apps[1].address)
    return alice, bob, channel, a, b


async def direct_pair(
    chat_cluster: StartCluster, **config: Any
) -> tuple[list[ChatApp], int, int, int]:
    """Two chat servers (a lifted send rate unless ``config`` says otherwise); alice owned
    by chat-0, bob by chat-1, and their direct channel."""
    apps = await chat_cluster(2, **{"send_rate": 1000.0, "send_burst": 1000, **config})
    alice = users_on(apps, "chat-0", 1)[0]
    bob = users_on(apps, "chat-1", 1)[0]
    channel = await open_direct(apps[0].address, alice, bob)
    return apps, alice, bob, channel


def slow_ring_watch(app: ChatApp, delay: float) -> None:
    """Make ``app`` apply every chat membership change ``delay`` seconds late (a slow ring
    watch, as on a busy machine), so its ring lags its peers'. Call before ``start()``."""
    watch = app.ring.watch
    publish = watch._publish

    async def late(members: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        await publish(members)

    watch._publish = late  # type: ignore[method-assign]


def fan_out_nothing(app: ChatApp, dropped: list[Any] | None = None) -> None:
    """``app`` stores and acks sends but neither it nor its claim loop fans anything out
    any more, as if it were killed right after each channel step (the outcomes it would
    have dispatched go to ``dropped``)."""

    def dispatch(outcome: Any) -> None:
        if dropped is not None:
            dropped.append(outcome)

    async def claim_nothing() -> int:
        return 0

    app.delivery.dispatch = dispatch  # type: ignore[method-assign]
    app.claims.claim_once = claim_nothing  # type: ignore[method-assign]


def users_on(apps: Sequence[ChatApp], instance: str, count: int, start: int = 1) -> list[int]:
    """``count`` user ids the ring gives to ``instance``."""
    ring = apps[0].ring.ring
    found: list[int] = []
    uid = start
    while len(found) < count:
        owner = ring.owner(uid)
        if owner is not None and owner.instance == instance:
            found.append(uid)
        uid += 1
    return found


class Device:
    """One device of one user on a Connect stream; records every frame it receives."""

    def __init__(
        self,
        user_id: int,
        address: str,
        device_id: str = "phone",
        cursor: str = "",
        read: bool = True,
        batch: bool = False,
        omit_own_echo: bool = False,
    ) -> None:
        self.user_id = user_id
        self.batch = batch
        self.omit_own_echo = omit_own_echo
        self.batch_sizes: list[int] = []
        """Frames in each ``batch`` frame received (their frames are in :attr:`frames`)."""
        self.address = address
        self.device_id = device_id
        self.cursor = cursor
        self.frames: list[chat_pb2.ConnectResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = False
        self._outbox: asyncio.Queue[chat_pb2.ConnectRequest | None] = asyncio.Queue()
        self._channel = grpc.aio.insecure_channel(address)
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None
        self._read = read

    async def _requests(self) -> AsyncIterator[chat_pb2.ConnectRequest]:
        yield chat_pb2.ConnectRequest(
            hello=chat_pb2.Hello(
                device_id=self.device_id,
                inbox_cursor=self.cursor,
                batch_frames=self.batch,
                omit_own_echo=self.omit_own_echo,
            )
        )
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            yield item

    async def open(self, synced: bool = True) -> Device:
        stub = chat_pb2_grpc.ChatServiceStub(self._channel)
        self._call = stub.Connect(self._requests(), metadata=auth(self.user_id))
        if self._read:
            self._task = asyncio.create_task(self._collect())
            if synced:
                await wait_until(lambda: self.synced or self.ended, what="sync_complete")
                if self.error is not None:
                    raise self.error
        return self

    async def _collect(self) -> None:
        try:
            async for received in self._call:
                batched = received.WhichOneof("frame") == "batch"
                if batched:
                    self.batch_sizes.append(len(received.batch.frames))
                for frame in received.batch.frames if batched else [received]:
                    self.frames.append(frame)
                    if frame.WhichOneof("frame") == "message":
                        self.cursor = frame.message.inbox_cursor
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc
        finally:
            self.ended = True

    def _of(self, kind: str) -> list[Any]:
        return [getattr(f, kind) for f in self.frames if f.WhichOneof("frame") == kind]

    @property
    def messages(self) -> list[chat_pb2.Message]:
        return self._of("message")

    @property
    def acks(self) -> list[chat_pb2.SendAck]:
        return self._of("send_ack")

    @property
    def send_errors(self) -> list[chat_pb2.SendError]:
        return self._of("send_error")

    @property
    def receipts(self) -> list[chat_pb2.Receipt]:
        return self._of("receipt")

    @property
    def reconnects(self) -> list[chat_pb2.ReconnectElsewhere]:
        return self._of("reconnect")

    @property
    def synced(self) -> bool:
        return bool(self._of("sync_complete"))

    def got(self, count: int) -> bool:
        """Whether ``count`` messages have arrived (a condition to wait for)."""
        return len(self.messages) >= count

    def has_ended(self) -> bool:
        return self.ended

    def texts(self, channel_id: int | None = None) -> list[str]:
        return [m.text for m in self.messages if channel_id in (None, m.channel_id)]

    def send(self, channel_id: int, text: str, client_msg_id: str | None = None) -> str:
        cmid = client_msg_id or f"{self.user_id}-{self.device_id}-{len(self.frames)}-{text}"[:64]
        self._outbox.put_nowait(
            chat_pb2.ConnectRequest(
                send=chat_pb2.SendMessage(client_msg_id=cmid, channel_id=channel_id, text=text)
            )
        )
        return cmid

    def _event(self, name: str, frame: Any) -> str:
        """Send a send-like frame (``edit``, ``delete``, ``react``, ``unreact``, ``send``);
        its client_msg_id (answered like a send)."""
        self._outbox.put_nowait(chat_pb2.ConnectRequest(**{name: frame}))
        return str(frame.client_msg_id)

    def _cmid(self, what: str, target: int) -> str:
        return f"{self.user_id}-{self.device_id}-{what}-{len(self.frames)}-{target}"[:64]

    def edit(self, channel_id: int, message_id: int, text: str) -> str:
        cmid = self._cmid("edit", message_id)
        return self._event(
            "edit",
            chat_pb2.EditMessage(
                client_msg_id=cmid, channel_id=channel_id, message_id=message_id, text=text
            ),
        )

    def delete(self, channel_id: int, message_id: int) -> str:
        cmid = self._cmid("del", message_id)
        return self._event(
            "delete",
            chat_pb2.DeleteMessage(
                client_msg_id=cmid, channel_id=channel_id, message_id=message_id
            ),
        )

    def react(self, channel_id: int, message_id: int, emoji: str, add: bool = True) -> str:
        """A ``react`` (or, ``add=False``, ``unreact``) frame."""
        kind = chat_pb2.AddReaction if add else chat_pb2.RemoveReaction
        frame = kind(
            client_msg_id=self._cmid("re", message_id),
            channel_id=channel_id,
            message_id=message_id,
            emoji=emoji,
        )
        return self._event("react" if add else "unreact", frame)

    def reply(self, channel_id: int, text: str, reply_to: int) -> str:
        """A message replying to ``reply_to``."""
        frame = chat_pb2.SendMessage(
            client_msg_id=self._cmid("reply", reply_to),
            channel_id=channel_id,
            text=text,
            reply_to=reply_to,
        )
        return self._event("send", frame)

    def send_batch(self, channel_id: int, sends: Sequence[tuple[str, str]]) -> None:
        """Queue one ``send_batch`` frame of (client_msg_id, text) sends."""
        batch = chat_pb2.SendBatch(
            sends=[
                chat_pb2.SendMessage(client_msg_id=cmid, channel_id=channel_id, text=text)
                for cmid, text in sends
            ]
        )
        self._outbox.put_nowait(chat_pb2.ConnectRequest(send_batch=batch))

    def ack(self, cursor: str | None = None) -> None:
        self._outbox.put_nowait(
            chat_pb2.ConnectRequest(ack=chat_pb2.Ack(inbox_cursor=cursor or self.cursor))
        )

    def read(self, channel_id: int, seq: int) -> None:
        self._outbox.put_nowait(
            chat_pb2.ConnectRequest(read=chat_pb2.Read(channel_id=channel_id, seq=seq))
        )

    async def sent(self, cmid: str, timeout: float = 5.0) -> chat_pb2.SendAck:  # noqa: ASYNC109
        """Wait for the ack (or fail on the error) of one send."""

        def done() -> bool:
            return (
                any(a.client_msg_id == cmid for a in self.acks)
                or any(e.client_msg_id == cmid for e in self.send_errors)
                or self.ended
            )

        await wait_until(done, timeout, f"ack of {cmid}")
        for error in self.send_errors:
            if error.client_msg_id == cmid:
                raise AssertionError(f"send refused: {error}")
        return next(a for a in self.acks if a.client_msg_id == cmid)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._outbox.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task
        await self._channel.close()


class Follower:
    """A device that follows its user around: reconnects (with its cursor) wherever the
    ring says, after redirects, kills and rebalancing."""

    def __init__(self, user_id: int, ring: RingWatch) -> None:
        self.user_id = user_id
        self.ring = ring
        self.streams: list[Device] = []
        self.cursor = ""
        self._task = asyncio.create_task(self._run())

    @property
    def texts(self) -> list[str]:
        return [m.text for d in self.streams for m in d.messages]

    def got(self, count: int) -> bool:
        """Whether ``count`` messages have arrived over all its streams."""
        return len(self.texts) >= count

    def heard(self, text: str) -> bool:
        return text in self.texts

    async def _run(self) -> None:
        while True:
            owner = self.ring.ring.owner(self.user_id)
            if owner is None:
                await asyncio.sleep(0.05)
                continue
            device = Device(self.user_id, owner.address, cursor=self.cursor)
            self.streams.append(device)
            try:
                await device.open(synced=False)
                await wait_until(device.has_ended, timeout=3600)
            finally:
                self.cursor = device.cursor or self.cursor
                await device.close()
            if not device.messages and device.error is not None:
                self.streams.remove(device)
            await asyncio.sleep(0.05)  # refused or cut: ask the ring again

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for device in self.streams:
            await device.close()


async def open_on_owner(user_id: int, ring: RingWatch, timeout: float = 10) -> Device:
    """Connect to the owner; the servers' own rings may still be converging at start-up
    (each learns the others from etcd on its own), so a refusal is retried until then."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        owner = ring.ring.owner(user_id)
        assert owner is not None, "the ring is empty"
        device = Device(user_id, owner.address)
        try:
            return await device.open()
        except grpc.aio.AioRpcError as exc:
            await device.close()
            if (
                exc.code() != grpc.StatusCode.FAILED_PRECONDITION
                or asyncio.get_running_loop().time() > deadline
            ):
                raise
            await asyncio.sleep(0.05)


@dataclass
class ChatProcesses:
    """Three chat servers as separate processes (``chat-0`` .. ``chat-2``), a ring watch on
    them, and the channel domain over the same stores (to set up channels directly)."""

    procs: list[EmbeddedServer]
    ring: RingWatch
    channels: Channels
    owner: dict[int, str]
    """Users 1..399 -> the instance that owns them once all three have joined."""
    followers: list[Follower] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)

    def users_of(self, instance: str) -> list[int]:
        return [u for u, o in self.owner.items() if o == instance]

    def follow(self, user_ids: Sequence[int]) -> list[Follower]:
        """A :class:`Follower` device per user (stopped on the way out)."""
        followers = [Follower(u, self.ring) for u in user_ids]
        self.followers += followers
        return followers

    async def connect(self, user_id: int) -> Device:
        """A device on the user's owner (closed on the way out)."""
        device = await open_on_owner(user_id, self.ring)
        self.devices.append(device)
        return device


@contextlib.asynccontextmanager
async def chat_processes(
    tmp: Path,
    etcd: str,
    prefix: str,
    redis_url: str,
    redis: Any,
    database_url: str,
    lease_ttl: int = 2,
) -> AsyncIterator[ChatProcesses]:
    """Start the three processes and wait until the ring has them all; stop everything
    on the way out (a process the test killed included)."""
    procs = [
        chat_process(
            tmp,
            f"chat-{i}",
            etcd=etcd,
            prefix=prefix,
            redis_url=redis_url,
            postgres_url=database_url,
            lease_ttl=lease_ttl,
            options=("--grace", "1"),
        )
        for i in range(3)
    ]
    db = await open_database(database_url, "chat", "chat_svc", 2)
    session = EtcdSession(etcd, prefix, ttl=2)
    await session.start()
    ring = RingWatch(session)
    await ring.start()
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        await ring.wait_for(lambda r: len(r.members) == 3, 20)
        owner = {u: owner_instance(ring.ring, u) for u in range(1, 400)}
        records = ChannelRecords(db)
        store = ChatStore(redis, load_members=records.members)
        channels = Channels(store, records, SnowflakeGenerator(lambda: 1), 500)
        chat = ChatProcesses(procs, ring, channels, owner)
        try:
            yield chat
        finally:
            for follower in chat.followers:
                await follower.stop()
            for device in chat.devices:
                await device.close()
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop()
        await ring.stop()
        await session.close()
        await db.close()


def owner_instance(ring: Ring, user_id: int) -> str:
    """The instance that owns ``user_id`` on ``ring`` (which must not be empty)."""
    member = ring.owner(user_id)
    assert member is not None, "the ring is empty"
    return member.instance


async def alice_and_bob(apps: Sequence[ChatApp]) -> tuple[int, int, int]:
    """A user owned by chat-0 (alice), one owned by chat-1 (bob), and their direct
    channel: the usual cast of a conversation across two servers."""
    alice = users_on(apps, "chat-0", 1)[0]
    bob = users_on(apps, "chat-1", 1)[0]
    return alice, bob, await open_direct(apps[0].address, alice, bob)

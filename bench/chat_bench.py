#!/usr/bin/env python3
"""Chat benchmark: delivery latency and throughput across chat servers, beside a bare
grpc.aio bidirectional echo server driven by the same load generator, plus reconnect churn.

    .venv/bin/python bench/chat_bench.py            # about 1.5 minutes
    .venv/bin/python bench/chat_bench.py --mode poll   # unary send + long poll vs stream
    .venv/bin/python bench/chat_bench.py --redis-cluster [--replica-acks 1]
    .venv/bin/python bench/chat_bench.py --mode group  # read-heavy groups vs a broadcast
    .venv/bin/python bench/chat_bench.py --batch       # chat streams take batch frames
    .venv/bin/python bench/chat_bench.py --batch --no-echo --send-batch  # every opt-in

Starts its own etcd, Redis (AOF on; with ``--redis-cluster`` a 3-master Redis Cluster with a
replica each instead, every node's CPU counted) and PostgreSQL, and three chat servers as separate
processes (``python -m chat_svc``): senders are owned by chat-0, receivers by chat-1, and
the churn users by chat-2, which is SIGKILLed at the end. The load generator runs in this process.
Everything is on loopback.

``--mode poll`` runs the stream phases above (same method) and then the same phases with
unary calls only: each sender calls ``SendMessage`` on chat-0, each receiver long-polls
``PollInbox`` on chat-1 (its owner) in a loop, passing the previous answer's cursor; then
it holds 1,000 idle polls on chat-1 and reads its resident memory before and after.

``--mode group`` is the read-heavy case: 3 groups of 100 members (``--groups``,
``--members``), each group's members spread evenly over three chat servers, 2 senders per
group (``--senders``) each keeping 2 messages in flight until every other member has it.
It reports delivered messages per second (reads) and sends per second (writes) beside a
bare grpc.aio broadcast server in the same run (one frame in, a copy out to every other
stream of the group), and the CPU per delivered message of every process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedchat.chat.v1 import chat_pb2, chat_pb2_grpc  # noqa: E402
from feedchat_local.chat_process import chat_process  # noqa: E402
from feedchat_local.embedded import (  # noqa: E402
    EmbeddedServer,
    etcd_server,
    free_port,
    postgres_server,
    postgres_url,
    redis_server,
)
from feedchat_local.embedded_cluster import RedisClusterNodes  # noqa: E402
from feedchat_runtime.auth import authority_from_config  # noqa: E402
from feedchat_runtime.registry import EtcdSession  # noqa: E402
from feedchat_runtime.ring import RingWatch  # noqa: E402

AUTHORITY = authority_from_config("", "", dev=True)
PAIRS = 100  # 100 senders + 100 receivers = 200 connected users
ECHO_METHOD = "/bench.Echo/Echo"

SERVE_BYTES = """
async def main():
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(HANDLER)  # raw bytes in and out
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler})])
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()

asyncio.run(main())
"""
"""The tail of a bare baseline server: serves HANDLER as SERVICE/METHOD (raw bytes)."""

ECHO_SERVER = (
    """
import asyncio, sys, grpc

async def echo(requests, context):
    async for request in requests:
        yield request

HANDLER, SERVICE, METHOD = echo, "bench.Echo", "Echo"
"""
    + SERVE_BYTES
)


def now_ns() -> int:
    return time.perf_counter_ns()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by named processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}

    def per_message_us(self, messages: int) -> dict[str, float]:
        return {name: used / max(messages, 1) * 1e6 for name, used in self.used.items()}


class Stream:
    """One bidi stream of the load generator: a queue of requests up, a callback down."""

    def __init__(
        self,
        call_factory: Callable[[AsyncIterator[Any]], Any],
        on_frame: Callable[[Any], None],
        first: Any | None = None,
        together: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.on_frame = on_frame
        self.synced = asyncio.Event()
        self.ended = asyncio.Event()
        self.error: grpc.aio.AioRpcError | None = None
        self._first = first
        self._together = together
        """Makes one frame of the requests queued at once (None: one frame each)."""
        self.call = call_factory(self._requests())
        self.task = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[Any]:
        if self._first is not None:
            yield self._first
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if self._together is None or self.queue.empty():
                yield item
                continue
            items = [item]
            while not self.queue.empty() and len(items) < SEND_BATCH_MAX:
                more = self.queue.get_nowait()
                if more is None:
                    self.queue.put_nowait(None)
                    break
                items.append(more)
            yield self._together(items)

    async def _read(self) -> None:
        try:
            async for frame in self.call:
                self.on_frame(frame)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(BaseException):
            await self.task


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    """Senders and receivers; latency = send → arrival at the receiving stream."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.delivered = 0
        self.recording = False
        self.inflight = [0] * PAIRS
        self.released = asyncio.Event()
        self.senders: list[Callable[[int, int], None]] = []
        self.cpu: CpuMeter | None = None
        self.peak_delivered = 0

    def arrived(self, pair: int, sent_ns: int) -> None:
        self.inflight[pair] -= 1
        if self.recording:
            self.delivered += 1
            self.latencies.append((now_ns() - sent_ns) / 1e6)
        self.released.set()

    def send(self, pair: int) -> None:
        self.inflight[pair] += 1
        self.senders[pair](pair, now_ns())

    async def open_loop(self, rate: float, seconds: float) -> tuple[float, float, float]:
        """Offer ``rate`` msgs/s spread over the pairs; (p50 ms, p99 ms, delivered/s)."""
        self.latencies, self.delivered = [], 0
        start = time.perf_counter()
        self.recording = True
        sent = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                self.send(sent % PAIRS)
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.5)
        self.recording = False
        return (
            percentile(self.latencies, 0.5),
            percentile(self.latencies, 0.99),
            self.delivered / seconds,
        )

    async def closed_loop(self, window: int, seconds: float) -> float:
        """Each pair keeps ``window`` messages in flight; delivered msgs/s."""
        for pair in range(PAIRS):
            while self.inflight[pair] < window:
                self.send(pair)
        await asyncio.sleep(1.0)  # warm up
        self.latencies, self.delivered = [], 0
        self.recording = True
        if self.cpu is not None:
            self.cpu.start()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.released.clear()
            for pair in range(PAIRS):
                while self.inflight[pair] < window:
                    self.send(pair)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 0.05)
        self.recording = False
        if self.cpu is not None:
            self.cpu.stop()
        self.peak_delivered = self.delivered
        rate = self.delivered / seconds
        while any(n > 0 for n in self.inflight):  # drain before the next phase
            self.released.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 2.0)
            if not self.released.is_set():
                break
        return rate


def auth(user_id: int) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {AUTHORITY.issue_access(user_id).token}"),)


BATCH = [False]
"""``--batch``: chat streams ask for batch frames in their hello (off: one frame each)."""
NO_ECHO = [False]
"""``--no-echo``: chat streams ask not to get their own sends back (Hello.omit_own_echo)."""
SEND_BATCH = [False]
"""``--send-batch``: the sends queued on a chat stream at once go up as one send_batch."""
SEND_BATCH_MAX = 64


def options_note() -> str:
    """The chat streams' protocol options of this run, for the heading."""
    used = [
        name
        for name, on in (
            ("batch frames", BATCH[0]),
            ("no own echo", NO_ECHO[0]),
            ("send batches", SEND_BATCH[0]),
        )
        if on
    ]
    return f" with {', '.join(used)}" if used else ""


FRAMES = [0, 0]
"""gRPC messages the chat streams received, and the frames in them (batches unpacked)."""


def frames_note() -> str:
    """How many frames the chat streams got per gRPC message (since the last call)."""
    note = f"chat streams read {FRAMES[1]:,} frames in {FRAMES[0]:,} gRPC messages"
    FRAMES[:] = [0, 0]
    return note


def chat_stream(
    address: str,
    channel: grpc.aio.Channel,
    user_id: int,
    device: str,
    on_frame: Callable[[Any], None],
    cursor: str = "",
) -> Stream:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    hello = chat_pb2.ConnectRequest(
        hello=chat_pb2.Hello(
            device_id=device,
            inbox_cursor=cursor,
            batch_frames=BATCH[0],
            omit_own_echo=NO_ECHO[0],
        )
    )

    def unbatched(frame: Any) -> None:
        FRAMES[0] += 1
        if frame.WhichOneof("frame") == "batch":
            FRAMES[1] += len(frame.batch.frames)
            for inner in frame.batch.frames:
                on_frame(inner)
        else:
            FRAMES[1] += 1
            on_frame(frame)

    return Stream(
        lambda it: stub.Connect(it, metadata=auth(user_id)),
        unbatched,
        hello,
        sends_together if SEND_BATCH[0] else None,
    )


def sends_together(requests: list[Any]) -> Any:
    """One send_batch frame for sends queued at once."""
    return chat_pb2.ConnectRequest(
        send_batch=chat_pb2.SendBatch(sends=[request.send for request in requests])
    )


def cpu_results(load: Load) -> dict[str, float]:
    """``cpu_<process>``: CPU microseconds per delivered message in the peak phase."""
    if load.cpu is None:
        return {}
    return {f"cpu_{name}": us for name, us in load.cpu.per_message_us(load.peak_delivered).items()}


def cpu_line(
    a_name: str,
    a: dict[str, float],
    b_name: str,
    b: dict[str, float],
    ratio: str,
    prefix: str = "cpu_",
    when: str = "at peak",
) -> str:
    """The CPU-per-delivered-message line (results keyed ``<prefix><process>``): each
    process of a, then of b, and sum(b)/sum(a)."""
    a_cpu = {k[len(prefix) :]: v for k, v in a.items() if k.startswith(prefix)}
    b_cpu = {k[len(prefix) :]: v for k, v in b.items() if k.startswith(prefix)}
    return (
        f"  CPU per delivered message {when} (us): {a_name} "
        + ", ".join(f"{k} {v:.0f}" for k, v in a_cpu.items())
        + f" = {sum(a_cpu.values()):.0f} | {b_name} "
        + ", ".join(f"{k} {v:.0f}" for k, v in b_cpu.items())
        + f" = {sum(b_cpu.values()):.0f} | {ratio} "
        f"{sum(b_cpu.values()) / sum(a_cpu.values()):.2f}"
    )


FIXED_RATE = 200
"""Messages per second of the fixed-load phase (the same for chat and echo)."""


async def run_phases(load: Load, seconds: float) -> dict[str, float]:
    """Fixed load, then peak (closed loop, with CPU), then half the peak: the same for both."""
    results: dict[str, float] = {"fixed_rate": FIXED_RATE}
    if load.cpu is not None:
        load.cpu.start()
    p50, p99, _ = await load.open_loop(FIXED_RATE, seconds)
    results.update(fixed_p50=p50, fixed_p99=p99)
    if load.cpu is not None:  # each message on its own: the fixed costs of every operation
        load.cpu.stop()
        fixed = load.cpu.per_message_us(load.delivered)
        results.update({f"fixed_cpu_{name}": us for name, us in fixed.items()})
    results["peak"] = await load.closed_loop(4, seconds)
    results.update(cpu_results(load))
    p50, p99, got = await load.open_loop(results["peak"] / 2, seconds)
    results.update(half_p50=p50, half_p99=p99, half_rate=got)
    return results


async def bench_chat(ring: RingWatch, seconds: float, pids: dict[str, int]) -> dict[str, float]:
    owners = {u: ring.ring.owner(u) for u in range(1, 5000)}
    senders = [u for u, m in owners.items() if m.instance == "chat-0"][:PAIRS]
    receivers = [u for u, m in owners.items() if m.instance == "chat-1"][:PAIRS]
    a_addr = ring.ring.members["chat-0"].address
    b_addr = ring.ring.members["chat-1"].address
    chan_a, chan_b = grpc.aio.insecure_channel(a_addr), grpc.aio.insecure_channel(b_addr)
    stub = chat_pb2_grpc.ChatServiceStub(chan_a)
    channels = []
    for s, r in zip(senders, receivers, strict=True):
        reply = await stub.OpenDirectChannel(
            chat_pb2.OpenDirectChannelRequest(peer_user_id=r), metadata=auth(s)
        )
        channels.append(reply.channel.channel_id)
    load = Load()
    load.cpu = CpuMeter(pids)
    streams: list[Stream] = []
    counter = [0]

    def on_receiver_frame(frame: Any) -> None:
        if frame.WhichOneof("frame") == "message":
            pair, _, sent = frame.message.text.partition(":")
            load.arrived(int(pair), int(sent))

    def ignore(frame: Any) -> None:
        return None

    for s in senders:
        streams.append(chat_stream(a_addr, chan_a, s, "bench", ignore, cursor=""))
    for r in receivers:
        streams.append(chat_stream(b_addr, chan_b, r, "bench", on_receiver_frame))

    def make_sender(index: int) -> Callable[[int, int], None]:
        stream, channel_id = streams[index], channels[index]

        def send(pair: int, sent: int) -> None:
            counter[0] += 1
            stream.queue.put_nowait(
                chat_pb2.ConnectRequest(
                    send=chat_pb2.SendMessage(
                        client_msg_id=f"b{counter[0]}", channel_id=channel_id, text=f"{pair}:{sent}"
                    )
                )
            )

        return send

    load.senders = [make_sender(i) for i in range(PAIRS)]
    await asyncio.sleep(1.0)
    results = await run_phases(load, seconds)
    for stream in streams:
        await stream.close()
    await chan_a.close()
    await chan_b.close()
    return results


async def bench_echo(address: str, seconds: float, pids: dict[str, int]) -> dict[str, float]:
    channel = grpc.aio.insecure_channel(address)
    method = channel.stream_stream(
        ECHO_METHOD,
        request_serializer=chat_pb2.ConnectRequest.SerializeToString,
        response_deserializer=chat_pb2.ConnectRequest.FromString,
    )
    load = Load()
    load.cpu = CpuMeter(pids)

    def on_echo(frame: Any) -> None:
        if frame.WhichOneof("frame") == "send":
            pair, _, sent = frame.send.text.partition(":")
            load.arrived(int(pair), int(sent))

    streams = [Stream(lambda it: method(it), on_echo) for _ in range(PAIRS * 2)]
    counter = [0]

    def make_sender(index: int) -> Callable[[int, int], None]:
        stream = streams[index]

        def send(pair: int, sent: int) -> None:
            counter[0] += 1
            stream.queue.put_nowait(
                chat_pb2.ConnectRequest(
                    send=chat_pb2.SendMessage(
                        client_msg_id=f"b{counter[0]}", channel_id=1, text=f"{pair}:{sent}"
                    )
                )
            )

        return send

    load.senders = [make_sender(i) for i in range(PAIRS)]
    await asyncio.sleep(0.5)
    results = await run_phases(load, seconds)
    for stream in streams:
        await stream.close()
    await channel.close()
    return results


async def poll_loop(
    stub: Any, user_id: int, on_message: Callable[[Any], None], stop: asyncio.Event
) -> None:
    """One receiver on unary calls: PollInbox again and again from the last cursor."""
    cursor = ""
    wait = duration_pb2.Duration(seconds=25)
    while not stop.is_set():
        reply = await stub.PollInbox(
            chat_pb2.PollInboxRequest(device_id="bench-poll", inbox_cursor=cursor, wait=wait),
            metadata=auth(user_id),
            timeout=35,
        )
        for message in reply.messages:
            on_message(message)
        cursor = reply.inbox_cursor


async def bench_poll(ring: RingWatch, seconds: float, pids: dict[str, int]) -> dict[str, float]:
    """The phases of :func:`bench_chat` with SendMessage up and PollInbox down."""
    owners = {u: ring.ring.owner(u) for u in range(10_000, 20_000)}
    senders = [u for u, m in owners.items() if m.instance == "chat-0"][:PAIRS]
    receivers = [u for u, m in owners.items() if m.instance == "chat-1"][:PAIRS]
    chan_a = grpc.aio.insecure_channel(ring.ring.members["chat-0"].address)
    chan_b = grpc.aio.insecure_channel(ring.ring.members["chat-1"].address)
    stub_a, stub_b = chat_pb2_grpc.ChatServiceStub(chan_a), chat_pb2_grpc.ChatServiceStub(chan_b)
    channels = []
    for s, r in zip(senders, receivers, strict=True):
        reply = await stub_a.OpenDirectChannel(
            chat_pb2.OpenDirectChannelRequest(peer_user_id=r), metadata=auth(s)
        )
        channels.append(reply.channel.channel_id)
    load = Load()
    load.cpu = CpuMeter(pids)
    stop = asyncio.Event()

    def on_message(message: Any) -> None:
        pair, _, sent = message.text.partition(":")
        load.arrived(int(pair), int(sent))

    pollers = [asyncio.create_task(poll_loop(stub_b, r, on_message, stop)) for r in receivers]
    metadata = [auth(s) for s in senders]
    counter = [0]
    sends: set[asyncio.Task[Any]] = set()

    def make_sender(index: int) -> Callable[[int, int], None]:
        channel_id = channels[index]

        def send(pair: int, sent: int) -> None:
            counter[0] += 1
            request = chat_pb2.SendMessageRequest(
                client_msg_id=f"p{counter[0]}", channel_id=channel_id, text=f"{pair}:{sent}"
            )
            task = asyncio.ensure_future(stub_a.SendMessage(request, metadata=metadata[index]))
            sends.add(task)
            task.add_done_callback(sends.discard)

        return send

    load.senders = [make_sender(i) for i in range(PAIRS)]
    await asyncio.sleep(1.0)
    results = await run_phases(load, seconds)
    stop.set()
    for task in pollers:
        task.cancel()
    await asyncio.gather(*pollers, *sends, return_exceptions=True)
    await chan_a.close()
    await chan_b.close()
    return results


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def bench_idle_polls(ring: RingWatch, pid: int, count: int = 1000) -> dict[str, float]:
    """Hold ``count`` idle polls (no messages) on chat-1; its memory per held poll."""
    users = [u for u in range(20_000, 40_000) if ring.ring.owner(u).instance == "chat-1"][:count]
    channel = grpc.aio.insecure_channel(ring.ring.members["chat-1"].address)
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    wait = duration_pb2.Duration(seconds=60)
    for u in users[:50]:  # warm up (plain polls, answered at once): code paths, pools
        await stub.PollInbox(
            chat_pb2.PollInboxRequest(
                device_id="idle", inbox_cursor="0-0", wait=duration_pb2.Duration()
            ),
            metadata=auth(u),
        )
    await asyncio.sleep(1.0)
    before = rss_bytes(pid)
    calls = [
        stub.PollInbox(
            chat_pb2.PollInboxRequest(device_id="idle", inbox_cursor="0-0", wait=wait),
            metadata=auth(u),
            timeout=70,
        )
        for u in users
    ]
    await asyncio.sleep(5.0)  # every call reaches the server and is held
    held = sum(not call.done() for call in calls)
    after = rss_bytes(pid)
    for call in calls:
        call.cancel()
    await channel.close()
    return {"held": held, "rss_before": before, "rss_after": after}


async def bench_churn(ring: RingWatch, victim: EmbeddedServer) -> dict[str, float]:
    """200 users on chat-2, each with a backlog; SIGKILL chat-2; time until all resynced."""
    users = [u for u in range(5000, 60000) if ring.ring.owner(u).instance == "chat-2"][:200]
    address = ring.ring.members["chat-2"].address
    sender = next(u for u in range(1, 5000) if ring.ring.owner(u).instance == "chat-0")
    a_chan = grpc.aio.insecure_channel(ring.ring.members["chat-0"].address)
    stub = chat_pb2_grpc.ChatServiceStub(a_chan)
    group = (
        await stub.CreateGroup(
            chat_pb2.CreateGroupRequest(name="churn", member_ids=users[:199]), metadata=auth(sender)
        )
    ).channel
    members = [*users[:199], sender]
    victim_chan = grpc.aio.insecure_channel(address)
    cursors: dict[int, str] = {}
    done: dict[int, float] = {}
    kill_time = [0.0]

    def tracker(uid: int) -> Callable[[Any], None]:
        def on_frame(frame: Any) -> None:
            which = frame.WhichOneof("frame")
            if which == "message":
                cursors[uid] = frame.message.inbox_cursor
            elif which == "sync_complete" and kill_time[0]:
                done.setdefault(uid, time.perf_counter())

        return on_frame

    user_streams = [u for u in members if u != sender]
    live = {u: chat_stream(address, victim_chan, u, "churn", tracker(u)) for u in user_streams}
    sender_stream = chat_stream(
        ring.ring.members["chat-0"].address, a_chan, sender, "s", lambda f: None
    )
    for i in range(20):  # backlog everyone must get back
        sender_stream.queue.put_nowait(
            chat_pb2.ConnectRequest(
                send=chat_pb2.SendMessage(
                    client_msg_id=f"churn{i}", channel_id=group.channel_id, text=f"c{i}"
                )
            )
        )
    await asyncio.sleep(1.5)
    victim_pid = victim.process.pid if victim.process else 0
    kill_time[0] = time.perf_counter()
    os.kill(victim_pid, 9)
    for i in range(20, 40):  # and messages sent while they are away
        sender_stream.queue.put_nowait(
            chat_pb2.ConnectRequest(
                send=chat_pb2.SendMessage(
                    client_msg_id=f"churn{i}", channel_id=group.channel_id, text=f"c{i}"
                )
            )
        )
    channels: dict[str, grpc.aio.Channel] = {}
    detected = [0.0]

    async def follow(uid: int) -> None:
        await live[uid].ended.wait()
        while True:
            owner = ring.ring.owner(uid)
            if owner is None or owner.instance == "chat-2":
                await asyncio.sleep(0.02)
                continue
            detected[0] = detected[0] or time.perf_counter()
            channel = channels.setdefault(owner.address, grpc.aio.insecure_channel(owner.address))
            stream = chat_stream(
                owner.address, channel, uid, "churn", tracker(uid), cursor=cursors.get(uid, "")
            )
            live[uid] = stream
            while uid not in done and not stream.ended.is_set():  # noqa: ASYNC110 - two ends
                await asyncio.sleep(0.01)
            if uid in done:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(*(follow(u) for u in user_streams)), 60)
    last = max(done.values())
    results = {
        "users": float(len(user_streams) + 1),
        "all_resynced_s": last - kill_time[0],
        "detect_s": detected[0] - kill_time[0],
        "resync_after_detect_s": last - detected[0],
    }
    for stream in [*live.values(), sender_stream]:
        await stream.close()
    for channel in [*channels.values(), a_chan, victim_chan]:
        await channel.close()
    return results


def pid_of(server: EmbeddedServer) -> int:
    return server.process.pid if server.process else 0


def bench_chat_process(
    tmp: Path, etcd: str, redis_url: str, pg_url: str, name: str, extra: tuple[str, ...] = ()
) -> EmbeddedServer:
    profile = os.environ.get("CHAT_BENCH_PROFILE", "")  # e.g. /tmp/prof: cProfile each server
    return chat_process(
        tmp,
        name,
        etcd=etcd,
        prefix="/bench",
        redis_url=redis_url,
        postgres_url=pg_url,
        send_rate=100_000,
        options=("--log-level", "WARNING", "--outbound-queue", "4096", *extra),
        python_options=("-m", "cProfile", "-o", f"{profile}/{name}.prof") if profile else (),
    )


class Cluster:
    """What :func:`chat_cluster` started: the ring, the chat servers, Redis, the baseline."""

    def __init__(
        self,
        ring: RingWatch,
        chats: list[EmbeddedServer],
        redis_pids: dict[str, int],
        baseline: Any,
    ) -> None:
        self.ring = ring
        self.chats = chats
        self.redis_pids = redis_pids
        """Process id of each Redis node, by name ("redis", or "redis-0".. in a cluster)."""
        self.baseline: EmbeddedServer = baseline


@contextlib.asynccontextmanager
async def chat_cluster(
    count: int,
    baseline: tuple[str, str] | None = None,
    redis_cluster: bool = False,
    chat_args: tuple[str, ...] = (),
) -> AsyncIterator[Cluster]:
    """etcd, Redis (AOF; or a 3-master Redis Cluster with a replica each), PostgreSQL,
    ``count`` chat servers (``chat_args`` added to their flags) and an optional baseline
    server (name, Python source run with its port as argv[1]), all stopped on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    etcd = etcd_server(tmp / "etcd")
    postgres = postgres_server(tmp / "postgres")
    etcd.start()
    redis: EmbeddedServer | RedisClusterNodes
    if redis_cluster:
        redis = RedisClusterNodes(tmp / "redis-cluster", masters=3, replicas=1)
        redis.start()
        redis_url = redis.url
        redis_pids = {f"redis-{i}": pid_of(node) for i, node in enumerate(redis.nodes)}
    else:
        redis = redis_server(tmp / "redis")
        redis.start()
        redis_url, redis_pids = f"redis://{redis.address}/0", {"redis": pid_of(redis)}
    postgres.start()
    procs = [
        bench_chat_process(
            tmp, etcd.address, redis_url, postgres_url(postgres), f"chat-{i}", chat_args
        )
        for i in range(count)
    ]
    extra: list[EmbeddedServer] = []
    if baseline is not None:
        port = free_port()
        name, source = baseline
        argv = [sys.executable, "-c", source, str(port)]
        extra.append(EmbeddedServer(name, "127.0.0.1", port, tmp / name, argv, tmp / f"{name}.log"))
    session = EtcdSession(etcd.address, "/bench", ttl=2)
    ring: RingWatch | None = None
    try:
        for proc in [*procs, *extra]:
            proc.start()
        await session.start()
        ring = RingWatch(session)
        await ring.start()
        await ring.wait_for(lambda r: len(r.members) == count, 20)
        yield Cluster(ring, procs, redis_pids, extra[0] if extra else None)
    finally:
        if ring is not None:
            await ring.stop()
        await session.close()
        for proc in [*procs, *extra]:
            proc.stop()
        redis.stop()
        postgres.stop()
        etcd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


BROADCAST_METHOD = "/bench.Broadcast/Join"
BROADCAST_SERVER = (
    """
import asyncio, sys, grpc

groups = {}

async def join(requests, context):
    queue = asyncio.Queue()
    it = requests.__aiter__()
    group = groups.setdefault(await it.__anext__(), [])  # first frame: the group's name
    group.append(queue)

    async def fan_out():
        async for frame in it:  # every later frame goes to every other member, as is
            for other in group:
                if other is not queue:
                    other.put_nowait(frame)

    reader = asyncio.ensure_future(fan_out())
    try:
        while True:
            yield await queue.get()
    finally:
        reader.cancel()
        group.remove(queue)

HANDLER, SERVICE, METHOD = join, "bench.Broadcast", "Join"
"""
    + SERVE_BYTES
)


class GroupLoad:
    """Group senders; a message is done when every other member's stream has it."""

    def __init__(self, senders: int, recipients: int) -> None:
        self.recipients = recipients
        self.inflight = [0] * senders
        self.waiting: dict[int, int] = {}  # message number -> arrivals still due
        self.sent_at: dict[int, int] = {}
        self.released = asyncio.Event()
        self.send_frame: list[Callable[[int, str], None]] = []
        self.delivered = 0
        self.completed = 0
        self.latencies: list[float] = []
        self.counter = 0

    def arrived(self, text: str) -> None:
        number_text, _, sender_text = text.partition(":")
        number = int(number_text)
        self.delivered += 1
        left = self.waiting[number] - 1
        if left:
            self.waiting[number] = left
            return
        del self.waiting[number]
        self.latencies.append((now_ns() - self.sent_at.pop(number)) / 1e6)
        self.completed += 1
        self.inflight[int(sender_text)] -= 1
        self.released.set()

    def send(self, sender: int) -> None:
        self.counter += 1
        self.waiting[self.counter] = self.recipients
        self.sent_at[self.counter] = now_ns()
        self.inflight[sender] += 1
        self.send_frame[sender](self.counter, f"{self.counter}:{sender}")

    async def closed_loop(self, window: int, seconds: float, cpu: CpuMeter) -> dict[str, float]:
        """Each sender keeps ``window`` messages not yet everywhere; rates and CPU at peak."""

        async def round_until(end: float) -> None:
            while time.perf_counter() < end:
                self.released.clear()
                for sender in range(len(self.inflight)):
                    while self.inflight[sender] < window:
                        self.send(sender)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.released.wait(), 0.05)

        await round_until(time.perf_counter() + 1.0)  # warm up
        self.delivered, self.completed, self.latencies = 0, 0, []
        cpu.start()
        await round_until(time.perf_counter() + seconds)
        cpu.stop()
        delivered, completed = self.delivered, self.completed
        deadline = time.perf_counter() + 10
        while self.waiting and time.perf_counter() < deadline:  # drain
            self.released.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 0.5)
        results = {
            "delivered": delivered / seconds,
            "sends": completed / seconds,
            "p50": percentile(self.latencies, 0.5),
            "p99": percentile(self.latencies, 0.99),
            "undelivered": float(len(self.waiting)),
        }
        for name, us in cpu.per_message_us(delivered).items():
            results[f"cpu_{name}"] = us
        return results


GROUPS = 3
GROUP_SIZE = 100
SENDERS_PER_GROUP = 2
GROUP_WINDOW = 2
"""Messages each group sender keeps in flight (not yet at every member) at peak."""


def group_members(ring: RingWatch, groups: int, size: int) -> list[list[int]]:
    """``groups`` disjoint member lists, each spread evenly over the ring's chat servers."""
    names = sorted(ring.ring.members)
    by_server: dict[str, list[int]] = {name: [] for name in names}
    for user in range(100_000, 200_000):
        by_server[ring.ring.owner(user).instance].append(user)
    pools = [iter(by_server[name]) for name in names]
    return [[next(pools[i % len(pools)]) for i in range(size)] for _ in range(groups)]


async def bench_group_chat(
    ring: RingWatch, seconds: float, pids: dict[str, int], sizes: tuple[int, int, int]
) -> dict[str, float]:
    groups, size, per_group = sizes
    members = group_members(ring, groups, size)
    channels: dict[str, grpc.aio.Channel] = {}

    def channel_to(user: int) -> tuple[str, grpc.aio.Channel]:
        address = ring.ring.owner(user).address
        return address, channels.setdefault(address, grpc.aio.insecure_channel(address))

    load = GroupLoad(groups * per_group, size - 1)
    streams: list[Stream] = []
    sender_streams: list[tuple[Stream, int]] = []
    for group in members:
        owner = group[0]
        stub = chat_pb2_grpc.ChatServiceStub(channel_to(owner)[1])
        created = await stub.CreateGroup(
            chat_pb2.CreateGroupRequest(name="bench", member_ids=group[1:]), metadata=auth(owner)
        )
        channel_id = created.channel.channel_id
        for index, user in enumerate(group):

            def on_frame(frame: Any, user: int = user) -> None:
                if frame.WhichOneof("frame") == "message" and frame.message.sender_id != user:
                    load.arrived(frame.message.text)

            address, channel = channel_to(user)
            stream = chat_stream(address, channel, user, "bench", on_frame)
            streams.append(stream)
            if index < per_group:
                sender_streams.append((stream, channel_id))

    def make_sender(stream: Stream, channel_id: int) -> Callable[[int, str], None]:
        def send(number: int, text: str) -> None:
            stream.queue.put_nowait(
                chat_pb2.ConnectRequest(
                    send=chat_pb2.SendMessage(
                        client_msg_id=f"g{number}", channel_id=channel_id, text=text
                    )
                )
            )

        return send

    load.send_frame = [make_sender(stream, cid) for stream, cid in sender_streams]
    await asyncio.sleep(1.0)
    results = await load.closed_loop(GROUP_WINDOW, seconds, CpuMeter(pids))
    ended = [stream for stream in streams if stream.ended.is_set()]
    results["ended"] = float(len(ended))
    for stream in ended:  # e.g. a chat server lost its etcd lease under load: users moved
        reason = stream.error.code().name if stream.error else "reconnect"
        print(f"  a member's stream ended during the run: {reason}", file=sys.stderr)
    for stream in streams:
        await stream.close()
    for channel in channels.values():
        await channel.close()
    return results


async def bench_group_broadcast(
    address: str, seconds: float, pids: dict[str, int], sizes: tuple[int, int, int]
) -> dict[str, float]:
    groups, size, per_group = sizes
    channel = grpc.aio.insecure_channel(address)
    method = channel.stream_stream(
        BROADCAST_METHOD,
        request_serializer=lambda frame: frame,  # the join frame is raw bytes; sends are
        response_deserializer=chat_pb2.ConnectRequest.FromString,  # serialised below
    )
    load = GroupLoad(groups * per_group, size - 1)

    def on_frame(frame: Any) -> None:
        load.arrived(frame.send.text)

    streams: list[Stream] = []
    for group in range(groups):
        streams.extend(
            Stream(lambda it: method(it), on_frame, f"group-{group}".encode()) for _ in range(size)
        )
    sender_streams = [streams[g * size + i] for g in range(groups) for i in range(per_group)]

    def make_sender(stream: Stream) -> Callable[[int, str], None]:
        def send(number: int, text: str) -> None:
            frame = chat_pb2.ConnectRequest(
                send=chat_pb2.SendMessage(client_msg_id=f"g{number}", channel_id=1, text=text)
            )
            stream.queue.put_nowait(frame.SerializeToString())

        return send

    load.send_frame = [make_sender(stream) for stream in sender_streams]
    await asyncio.sleep(1.0)
    results = await load.closed_loop(GROUP_WINDOW, seconds, CpuMeter(pids))
    for stream in streams:
        await stream.close()
    await channel.close()
    return results


async def run_group(seconds: float, sizes: tuple[int, int, int]) -> None:
    """Read-heavy groups on three chat servers, then the bare broadcast server."""
    groups, size, per_group = sizes
    async with chat_cluster(3, ("broadcast", BROADCAST_SERVER)) as cluster:
        client = os.getpid()
        chat_pids = {"client": client, **cluster.redis_pids}
        chat_pids.update({proc.name: pid_of(proc) for proc in cluster.chats})
        chat = await bench_group_chat(cluster.ring, seconds, chat_pids, sizes)
        base_pids = {"client": client, "broadcast": pid_of(cluster.baseline)}
        base = await bench_group_broadcast(cluster.baseline.address, seconds, base_pids, sizes)
    print(
        f"chat bench, group mode{options_note()} ({groups} groups of {size} members spread "
        f"over 3 chat servers, {per_group} senders per group, {GROUP_WINDOW} messages in "
        "flight per sender)"
    )
    for name, figures in (("chat", chat), ("broadcast", base)):
        print(
            f"  {name}: delivered {figures['delivered']:.0f} msg/s (reads), sends "
            f"{figures['sends']:.0f} msg/s (writes), send -> last member p50 "
            f"{figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms"
            + (f", {figures['undelivered']:.0f} never arrived" if figures["undelivered"] else "")
            + (f", {figures['ended']:.0f} streams ended early" if figures.get("ended") else "")
        )
    print(
        f"  ratio chat/broadcast delivered {chat['delivered'] / base['delivered']:.2f} "
        "(goal >= 0.4)"
    )
    print(cpu_line("chat", chat, "broadcast", base, "CPU ratio"))
    print(f"  {frames_note()}")


async def run_poll(seconds: float) -> None:
    """Stream phases, then the same phases on unary calls only, then 1,000 idle polls."""
    async with chat_cluster(2) as cluster:
        pids = {
            "client": os.getpid(),
            "chat-0": pid_of(cluster.chats[0]),
            "chat-1": pid_of(cluster.chats[1]),
            **cluster.redis_pids,
        }
        stream = await bench_chat(cluster.ring, seconds, pids)
        poll = await bench_poll(cluster.ring, seconds, pids)
        idle = await bench_idle_polls(cluster.ring, pid_of(cluster.chats[1]))
    print(
        f"chat bench, poll mode ({PAIRS} senders -> {PAIRS} receivers; senders call chat-0, "
        "receivers are owned by chat-1)"
    )
    print(
        f"  fixed load {FIXED_RATE} msg/s, send -> arrival: stream p50 "
        f"{stream['fixed_p50']:.2f} ms, p99 {stream['fixed_p99']:.2f} ms | unary send + long "
        f"poll p50 {poll['fixed_p50']:.2f} ms, p99 {poll['fixed_p99']:.2f} ms"
    )
    print(
        f"  peak delivered: stream {stream['peak']:.0f} msg/s | poll {poll['peak']:.0f} msg/s "
        f"| ratio poll/stream {poll['peak'] / stream['peak']:.2f}"
    )
    print(
        f"  half peak: stream ({stream['half_rate']:.0f} msg/s) p50 {stream['half_p50']:.2f} "
        f"ms, p99 {stream['half_p99']:.2f} ms | poll ({poll['half_rate']:.0f} msg/s) p50 "
        f"{poll['half_p50']:.2f} ms, p99 {poll['half_p99']:.2f} ms"
    )
    print(cpu_line("stream", stream, "poll", poll, "ratio poll/stream"))
    grown = idle["rss_after"] - idle["rss_before"]
    print(
        f"  idle polls held on chat-1: {idle['held']:.0f} of 1000; resident memory "
        f"{idle['rss_before'] / 2**20:.1f} -> {idle['rss_after'] / 2**20:.1f} MiB = "
        f"{grown / max(idle['held'], 1) / 1024:.1f} KiB per held poll"
    )


async def run(seconds: float, redis_cluster: bool, replica_acks: int) -> None:
    extra = ("--replica-acks", str(replica_acks))
    async with chat_cluster(3, ("echo", ECHO_SERVER), redis_cluster, extra) as cluster:
        ring, procs, echo = cluster.ring, cluster.chats, cluster.baseline
        started = time.perf_counter()
        client = os.getpid()
        chat = await bench_chat(
            ring,
            seconds,
            {
                "client": client,
                "chat-0": pid_of(procs[0]),
                "chat-1": pid_of(procs[1]),
                **cluster.redis_pids,
            },
        )
        echo_results = await bench_echo(
            echo.address, seconds, {"client": client, "echo": pid_of(echo)}
        )
        churn = await bench_churn(ring, procs[2])
        elapsed = time.perf_counter() - started
    ratio = chat["peak"] / echo_results["peak"]
    topology = "a 3-master Redis Cluster" if redis_cluster else "one Redis"
    print(
        f"chat bench{options_note()} ({elapsed:.0f} s of load, {PAIRS} senders on chat-0 -> "
        f"{PAIRS} receivers on chat-1, 200 connected users; {topology}, --replica-acks "
        f"{replica_acks})"
    )
    print(
        f"  fixed load {chat['fixed_rate']:.0f} msg/s: chat p50 {chat['fixed_p50']:.2f} ms, "
        f"p99 {chat['fixed_p99']:.2f} ms | echo p50 {echo_results['fixed_p50']:.2f} ms, "
        f"p99 {echo_results['fixed_p99']:.2f} ms"
    )
    print(
        f"  peak delivered: chat {chat['peak']:.0f} msg/s | echo {echo_results['peak']:.0f} "
        f"msg/s | ratio {ratio:.2f} (goal >= 0.4)"
    )
    print(
        f"  half peak ({chat['half_rate']:.0f} msg/s): chat p50 {chat['half_p50']:.2f} ms, "
        f"p99 {chat['half_p99']:.2f} ms (goal <= 20) | echo at its half peak "
        f"({echo_results['half_rate']:.0f} msg/s): p99 {echo_results['half_p99']:.2f} ms"
    )
    print(cpu_line("chat", chat, "echo", echo_results, "CPU ratio"))
    print(
        cpu_line(
            "chat", chat, "echo", echo_results, "CPU ratio", "fixed_cpu_", f"at {FIXED_RATE} msg/s"
        )
    )
    print(f"  {frames_note()} (whole run, churn included)")
    print(
        f"  reconnect churn: {churn['users']:.0f} users on a SIGKILLed server resynced "
        f"{churn['all_resynced_s']:.2f} s after the kill (ring dropped it after "
        f"{churn['detect_s']:.2f} s = lease TTL; reconnect + resync "
        f"{churn['resync_after_detect_s']:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    parser.add_argument(
        "--mode",
        choices=("stream", "poll", "group"),
        default="stream",
        help="stream: chat vs a bare echo server, churn; poll: unary send + long poll vs "
        "stream; group: read-heavy groups vs a bare broadcast server",
    )
    parser.add_argument("--groups", type=int, default=GROUPS, help="group mode: groups")
    parser.add_argument("--members", type=int, default=GROUP_SIZE, help="group mode: size")
    parser.add_argument(
        "--senders", type=int, default=SENDERS_PER_GROUP, help="group mode: senders per group"
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="run chat on a 3-master Redis Cluster (a replica each) instead of one Redis",
    )
    parser.add_argument(
        "--replica-acks", type=int, default=0, choices=(0, 1), help="the chat servers' flag"
    )
    parser.add_argument(
        "--batch", action="store_true", help="chat streams take batch frames (Hello.batch_frames)"
    )
    parser.add_argument(
        "--no-echo",
        action="store_true",
        help="chat streams do not get their own sends back (Hello.omit_own_echo)",
    )
    parser.add_argument(
        "--send-batch",
        action="store_true",
        help="sends queued on a chat stream at once go up as one send_batch frame",
    )
    args = parser.parse_args()
    BATCH[0], NO_ECHO[0], SEND_BATCH[0] = args.batch, args.no_echo, args.send_batch
    if args.mode == "group":
        asyncio.run(run_group(args.seconds, (args.groups, args.members, args.senders)))
    elif args.mode == "poll":
        asyncio.run(run_poll(args.seconds))
    else:
        asyncio.run(run(args.seconds, args.redis_cluster, args.replica_acks))


if __name__ == "__main__":
    main()

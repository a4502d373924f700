#!/usr/bin/env python3
"""presence_svc under many connected, heartbeating users — against a bare gRPC baseline.

    .venv/bin/python bench/presence_bench.py [--users 10000] [--interval 10] [--window 20]

Starts its own etcd and Redis, then two presence_svc processes. One client process opens
``--users`` Connect streams spread over both instances (each user watches 5 random users)
and heartbeats every ``--interval`` seconds at a random phase. Measured on the server
processes: CPU over ``--window`` seconds of steady heartbeating (``/proc/<pid>/stat``),
RSS growth per connection. Then 100 "subject" users on instance 1 flip between online and
away while 100 watchers on instance 0 (5 subjects each) read their changes: the time from
the client sending the heartbeat that causes a transition to a watcher reading its event.

Baseline, same run: two bare ``grpc.aio`` servers (generic bidi handler, no feedchat code:
no auth, no Redis) receiving the same streams and the same heartbeat bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedchat.presence.v1 import presence_pb2 as pb  # noqa: E402
from feedchat_local.embedded import (  # noqa: E402
    etcd_server,
    free_port,
    redis_server,
    wait_for_port,
)
from feedchat_runtime.auth import authority_from_config  # noqa: E402

CONNECT = "/feedchat.presence.v1.PresenceService/Connect"
CHANNELS_PER_INSTANCE = 16
WATCH_PER_USER = 5
SUBJECTS = 100
WATCHERS = 100
HZ = os.sysconf("SC_CLK_TCK")
AUTH = authority_from_config("", "", dev=True)
HEARTBEAT = pb.ConnectRequest(heartbeat=pb.Heartbeat()).SerializeToString()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- the baseline server: bare grpc.aio, same method path, bytes in, bytes out ----------


async def bare_server(port: int) -> None:
    first = pb.ConnectResponse(snapshot=pb.Snapshot()).SerializeToString()

    async def connect(request_iterator, context):  # type: ignore[no-untyped-def]
        await context.write(first)
        async for _ in request_iterator:
            pass

    handler = grpc.method_handlers_generic_handler(
        "feedchat.presence.v1.PresenceService",
        {"Connect": grpc.stream_stream_rpc_method_handler(connect)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# --- the load ----------------------------------------------------------------------------


class User:
    __slots__ = ("uid", "call", "instance")

    def __init__(self, uid: int, instance: int) -> None:
        self.uid = uid
        self.instance = instance
        self.call: grpc.aio.StreamStreamCall | None = None


class Load:
    """Opens streams, heartbeats them, and measures transition latency."""

    def __init__(self, addresses: list[str], users: int, interval: float, presence: bool):
        self.presence = presence
        self.interval = interval
        self.channels = [
            [grpc.aio.insecure_channel(a) for _ in range(CHANNELS_PER_INSTANCE)] for a in addresses
        ]
        self.users = [User(1000 + i, i % 2) for i in range(users)]
        self._stop = asyncio.Event()
        self.sent = 0
        self.toggle_sent: dict[tuple[int, int], float] = {}
        self.latencies: list[float] = []

    def _open(self, user: User) -> grpc.aio.StreamStreamCall:
        chans = self.channels[user.instance]
        channel = chans[user.uid % len(chans)]
        method = channel.stream_stream(CONNECT)  # raw bytes both ways
        token = AUTH.issue_access(user.uid).token
        return method(metadata=(("authorization", f"Bearer {token}"),))

    async def connect_all(self, batch: int = 250) -> float:
        started = time.monotonic()
        uids = [u.uid for u in self.users]

        async def one(user: User) -> None:
            user.call = self._open(user)
            await user.call.read()  # the first snapshot: the stream is live
            if self.presence:
                watch = random.sample(uids, WATCH_PER_USER)
                await user.call.write(
                    pb.ConnectRequest(watch=pb.Watch(user_ids=watch)).SerializeToString()
                )

        for i in range(0, len(self.users), batch):
            await asyncio.gather(*(one(u) for u in self.users[i : i + batch]))
        return time.monotonic() - started

    async def heartbeat_forever(self) -> None:
        """Each user heartbeats every ``interval`` s; phases spread over 100 slots."""
        slots = 100
        by_slot: list[list[User]] = [[] for _ in range(slots)]
        for user in self.users:
            by_slot[random.randrange(slots)].append(user)
        tick = self.interval / slots
        slot = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            for user in by_slot[slot]:
                assert user.call is not None
                try:
                    await user.call.write(HEARTBEAT)
                    self.sent += 1
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    pass
            slot = (slot + 1) % slots
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def measure_latency(self, seconds: float, rate: float) -> None:
        """Subjects (instance 1) flip online/away; watchers (instance 0) read changes."""
        subjects = [u for u in self.users if u.instance == 1][:SUBJECTS]
        watchers = [u for u in self.users if u.instance == 0][:WATCHERS]
        watched_by: dict[int, list[int]] = {}
        readers = []
        for i, watcher in enumerate(watchers):
            mine = [subjects[(i + k) % len(subjects)].uid for k in range(WATCH_PER_USER)]
            for uid in mine:
                watched_by.setdefault(uid, []).append(watcher.uid)
            # A fresh stream for each watcher, so no frames are queued from the load phase.
            watcher.call = self._open(watcher)
            await watcher.call.read()
            await watcher.call.write(
                pb.ConnectRequest(watch=pb.Watch(user_ids=mine, replace=True)).SerializeToString()
            )
            await watcher.call.read()
            readers.append(asyncio.create_task(self._read_changes(watcher)))
        away = dict.fromkeys((s.uid for s in subjects), False)
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            subject = subjects[i % len(subjects)]
            i += 1
            away[subject.uid] = not away[subject.uid]
            status = pb.PRESENCE_STATUS_AWAY if away[subject.uid] else pb.PRESENCE_STATUS_ONLINE
            assert subject.call is not None
            self.toggle_sent[(subject.uid, status)] = time.monotonic()
            await subject.call.write(
                pb.ConnectRequest(heartbeat=pb.Heartbeat(status=status)).SerializeToString()
            )
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(1.0)  # let the last events land
        for task in readers:
            task.cancel()

    async def _read_changes(self, watcher: User) -> None:
        assert watcher.call is not None
        while True:
            raw = await watcher.call.read()
            if raw is grpc.aio.EOF:
                return
            frame = pb.ConnectResponse.FromString(raw)
            if frame.WhichOneof("frame") != "change":
                continue
            p = frame.change.presence
            sent = self.toggle_sent.get((p.user_id, p.status))
            if sent is not None:
                self.latencies.append(time.monotonic() - sent)

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        for user in self.users:
            if user.call is not None:
                user.call.cancel()
        for chans in self.channels:
            for channel in chans:
                await channel.close()


def start_presence(
    etcd: str, redis_url: str, index: int, interval: float, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "presence_svc",
        "--port",
        str(port),
        "--instance",
        f"presence-{index}",
        "--etcd",
        etcd,
        "--etcd-prefix",
        "/bench",
        "--redis-url",
        redis_url,
        "--dev",
        "--log-level",
        "WARNING",
        "--heartbeat-interval",
        str(interval),
        "--offline-timeout",
        str(3 * interval),
        "--default-watch",
        "false",
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port, 30, proc)
    return proc, f"127.0.0.1:{port}"


def start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--bare-server", str(port)], cwd=ROOT)
    wait_for_port("127.0.0.1", port, 30, proc)  # type: ignore[arg-type]
    return proc, f"127.0.0.1:{port}"


async def run_phase(
    name: str,
    procs: list[subprocess.Popen[bytes]],
    addresses: list[str],
    args: argparse.Namespace,
    presence: bool,
    redis_pid: int | None = None,
) -> dict[str, float]:
    pids = [p.pid for p in procs]
    await asyncio.sleep(1.0)
    rss0 = sum(rss_bytes(pid) for pid in pids)
    load = Load(addresses, args.users, args.interval, presence)
    took = await load.connect_all()
    print(f"[{name}] {args.users} streams open in {took:.1f} s", flush=True)
    beating = asyncio.create_task(load.heartbeat_forever())
    await asyncio.sleep(2.0)  # settle: connect-time work done, heartbeats flowing
    rss1 = sum(rss_bytes(pid) for pid in pids)
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    redis0 = cpu_seconds(redis_pid) if redis_pid else 0.0
    sent0, t0 = load.sent, time.monotonic()
    await asyncio.sleep(args.window)
    cpu1 = sum(cpu_seconds(pid) for pid in pids)
    redis1 = cpu_seconds(redis_pid) if redis_pid else 0.0
    elapsed, sent = time.monotonic() - t0, load.sent - sent0
    result = {
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "heartbeats_per_s": sent / elapsed,
        "rss_per_conn": (rss1 - rss0) / args.users,
        "redis_share": (redis1 - redis0) / elapsed,
    }
    if presence:
        await load.measure_latency(args.latency_seconds, rate=20)
        lat = sorted(load.latencies)
        if lat:
            result["lat_n"] = len(lat)
            result["lat_p50"] = statistics.median(lat) * 1000
            result["lat_p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            result["lat_max"] = lat[-1] * 1000
    load.stop()
    await beating
    await load.close()
    per_k = result["cpu_share"] * 100 / (args.users / 1000)
    print(
        f"[{name}] CPU {result['cpu_share'] * 100:.1f}% of one core for {args.users} users "
        f"= {per_k:.2f}% per 1,000 users ({result['heartbeats_per_s']:.0f} heartbeats/s); "
        f"RSS +{result['rss_per_conn'] / 1024:.1f} KiB per connection",
        flush=True,
    )
    return result


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="presence-bench-"))
    etcd = etcd_server(tmp / "etcd")
    redis = redis_server(tmp / "redis")
    etcd.start()
    redis.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_url = f"redis://{redis.address}/0"
        started = [
            start_presence(etcd.address, redis_url, i, args.interval, tmp / f"presence-{i}.log")
            for i in range(2)
        ]
        procs = [p for p, _ in started]
        assert redis.process is not None
        presence = await run_phase(
            "presence", procs, [a for _, a in started], args, True, redis.process.pid
        )
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        bare = [start_bare() for _ in range(2)]
        procs = [p for p, _ in bare]
        baseline = await run_phase("bare grpc.aio", procs, [a for _, a in bare], args, False)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        etcd.stop()
        redis.stop()
    users_k = args.users / 1000
    per_k = presence["cpu_share"] * 100 / users_k
    base_k = baseline["cpu_share"] * 100 / users_k
    at_10s = per_k * args.interval / 10
    print()
    print(
        f"users {args.users} on 2 instances, heartbeat every {args.interval:g} s, "
        f"window {args.window:g} s"
    )
    print(
        f"CPU per 1,000 users: presence {per_k:.2f}% of a core, bare grpc.aio {base_k:.2f}%"
        f", ratio {per_k / base_k:.2f}   (goal <= 5% at a 10 s interval: "
        f"{at_10s:.2f}%)"
    )
    print(
        f"Redis server CPU meanwhile (not counted above): "
        f"{presence['redis_share'] * 100 / users_k:.2f}% of a core per 1,000 users"
    )
    print(
        f"memory per connection: presence {presence['rss_per_conn'] / 1024:.1f} KiB, "
        f"bare {baseline['rss_per_conn'] / 1024:.1f} KiB, "
        f"ratio {presence['rss_per_conn'] / max(1.0, baseline['rss_per_conn']):.2f}"
    )
    if "lat_p99" in presence:
        print(
            f"transition-to-event latency over {int(presence['lat_n'])} events: "
            f"p50 {presence['lat_p50']:.1f} ms, p99 {presence['lat_p99']:.1f} ms, "
            f"max {presence['lat_max']:.1f} ms   (goal p99 <= 100 ms)"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-server":
        asyncio.run(bare_server(int(sys.argv[2])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))

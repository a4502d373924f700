#!/usr/bin/env python3
"""notify_svc benchmark: queue-to-webhook delivery against raw signed POSTs.

    .venv/bin/python bench/notify_bench.py [--entries 2000] [--concurrency 32]

Starts its own etcd and Redis (temporary folder, loopback), a keep-alive HTTP receiver and
one notify_svc (API + worker) in this process, then measures:

1. throughput: ``--entries`` queue entries for distinct users (one webhook device each),
   XADDed up front, until all are acknowledged — against the baseline of the same number
   of signed POSTs sent straight to the receiver through the same httpx client and
   concurrency (no Redis, no queue);
2. collapsing: the same number of entries spread over 20 channels of one user: queue
   entries applied per second, and how many pushes they became;
3. latency, one at a time: XADD until the receiver has the POST, against one direct POST.
Receiver, worker and client share this process (and 2 shared cores), so absolute numbers
are conservative; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from feedchat.notify.v1 import notify_pb2 as pb
from feedchat.notify.v1 import notify_pb2_grpc
from feedchat_local.embedded import etcd_server, redis_server
from feedchat_runtime.auth import authority_from_config
from feedchat_runtime.config import load_config
from feedchat_runtime.notify_queue import QUEUE_KEY
from notify_svc.allowlist import AllowList
from notify_svc.app import build
from notify_svc.config import NotifyConfig
from notify_svc.webhook import WebhookSender, make_client


class Receiver:
    """HTTP/1.1 keep-alive receiver answering 204; counts requests."""

    def __init__(self) -> None:
        self.count = 0
        self.arrived = asyncio.Event()
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.count += 1
                self.arrived.set()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def drained(redis: aioredis.Redis) -> bool:
    if await redis.xlen(QUEUE_KEY):
        return False
    return int((await redis.xpending(QUEUE_KEY, "notify-workers"))["pending"]) == 0


async def wait_drained(redis: aioredis.Redis, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not await drained(redis):
        if time.perf_counter() > deadline:
            raise TimeoutError("queue did not drain")
        await asyncio.sleep(0.005)


async def enqueue(redis: aioredis.Redis, entries: list[tuple[int, int, int]]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for user_id, channel_id, message_id in entries:
            pipe.xadd(
                QUEUE_KEY,
                {
                    "kind": "chat_message",
                    "user_id": str(user_id),
                    "channel_id": str(channel_id),
                    "message_id": str(message_id),
                    "sender_id": "1",
                    "preview": "benchmark message",
                    "created_ms": str(int(time.time() * 1000)),
                },
            )
        await pipe.execute()


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


async def run(entries: int, concurrency: int, folder: Path) -> None:
    etcd, redis_proc = etcd_server(folder), redis_server(folder, appendonly=True)
    etcd.start()
    redis_proc.start()
    receiver = Receiver()
    http_server = await receiver.start()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    redis = aioredis.Redis.from_url(f"redis://{redis_proc.address}/0")
    try:
        config = load_config(
            NotifyConfig,
            [],
            env={},
            etcd=etcd.address,
            redis_url=f"redis://{redis_proc.address}/0",
            dev=True,
            log_level="WARNING",
            log_format="text",
            concurrency=concurrency,
            webhook_allow=f"127.0.0.1:{receiver.port}",
            webhook_allow_http=True,
            collapse_window=600.0,
        )
        app = await build(config)
        await app.host.start()
        authority = authority_from_config("", "", dev=True)
        users = list(range(1, entries + 1))
        async with grpc.aio.insecure_channel(app.host.address) as channel:
            stub = notify_pb2_grpc.NotifyServiceStub(channel)
            for user_id in [*users, 999_999]:
                await stub.RegisterDevice(
                    pb.RegisterDeviceRequest(
                        device_id="d", kind=pb.DEVICE_KIND_WEBHOOK, webhook_url=url
                    ),
                    metadata=(
                        ("authorization", f"Bearer {authority.issue_access(user_id).token}"),
                    ),
                )

        # 1. Baseline: signed POSTs straight to the receiver, same client and concurrency.
        client = make_client(config.webhook_timeout, config.webhook_max_connections)
        sender = WebhookSender(
            client,
            AllowList.parse(config.webhook_allow, True),
            config.signing_secret,
            config.webhook_timeout,
        )
        payload = {
            "type": "notification",
            "notification": {"id": "1", "count": 1, "preview": "benchmark message"},
        }
        todo = iter(range(entries))

        async def post_loop() -> None:
            for i in todo:
                result = await sender.deliver(url, payload, f"{i}.d")
                assert result.ok, result

        started = time.perf_counter()
        await asyncio.gather(*(post_loop() for _ in range(concurrency)))
        raw_rate = entries / (time.perf_counter() - started)

        # 2. Pipeline: queue entries for distinct users, worker started once all are queued.
        await enqueue(redis, [(u, 100, 10_000 + u) for u in users])
        assert app.worker is not None
        before = receiver.count
        started = time.perf_counter()
        await app.worker.start()
        await wait_drained(redis)
        pipeline_rate = entries / (time.perf_counter() - started)
        assert receiver.count - before == entries, (receiver.count - before, entries)

        # 3. Collapsing: one user, 20 channels, the same number of entries.
        before = receiver.count
        await enqueue(redis, [(999_999, 1 + i % 20, 10_000_000 + i) for i in range(entries)])
        started = time.perf_counter()
        await wait_drained(redis)
        collapse_rate = entries / (time.perf_counter() - started)
        pushes = receiver.count - before

        # 4. Latency, one at a time.
        direct, queued = [], []
        for i in range(200):
            t0 = time.perf_counter()
            await sender.deliver(url, payload, f"lat{i}.d")
            direct.append((time.perf_counter() - t0) * 1000)
        for i in range(200):
            receiver.arrived.clear()
            t0 = time.perf_counter()
            await enqueue(redis, [(1 + i, 5000 + i, 50_000_000 + i)])
            await receiver.arrived.wait()
            queued.append((time.perf_counter() - t0) * 1000)
        await client.aclose()
        await app.stop()

        print(f"entries={entries} concurrency={concurrency}")
        print(f"raw signed POSTs (baseline):   {raw_rate:8.0f} /s")
        print(
            f"queue -> webhook deliveries:   {pipeline_rate:8.0f} /s   "
            f"ratio {pipeline_rate / raw_rate:.2f}"
        )
        print(
            f"collapsing burst (20 channels): {collapse_rate:7.0f} entries/s -> {pushes} pushes"
            f"   ratio vs deliveries {collapse_rate / pipeline_rate:.2f}"
        )
        print(f"latency direct POST:  p50 {pct(direct, 50):.2f} ms  p99 {pct(direct, 99):.2f} ms")
        print(
            f"latency XADD->POST:   p50 {pct(queued, 50):.2f} ms  p99 {pct(queued, 99):.2f} ms"
            f"   ratio (p50) {pct(queued, 50) / pct(direct, 50):.1f}"
        )
    finally:
        await redis.aclose()
        http_server.close()
        redis_proc.stop()
        etcd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.entries, args.concurrency, Path(tmp)))


if __name__ == "__main__":
    main()

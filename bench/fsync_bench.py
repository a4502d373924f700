#!/usr/bin/env python3
"""What `feedchat up --fsync always` costs a chat send, beside the default `everysec`.

    .venv/bin/python bench/fsync_bench.py            # about 30 s

Starts two Redis servers from the same binary, append-only file on, one with
``appendfsync everysec`` and one with ``appendfsync always``, and drives the chat send path
(``ChatStore.store_message``: the group-committed channel step a send is acked after --
its latency is what is reported -- then ``ChatStore.fan_out``, its inbox appends; 1:1
channels) against each in turn in this process: one sender at a time (latency of a lone
send), then 64 concurrent senders (throughput with group commit). Prints sends/s and
latency for both and the ratio always / everysec from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat_svc.store import ChatStore  # noqa: E402
from feedchat_local.embedded import redis_server  # noqa: E402
from feedchat_runtime import redis_client  # noqa: E402
from feedchat_runtime.snowflake import SnowflakeGenerator  # noqa: E402

CONCURRENT = 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(store: ChatStore, senders: int, seconds: float) -> dict[str, float]:
    """``senders`` loops, each sending to its own 1:1 channel back to back."""
    ids = SnowflakeGenerator(lambda: 1)
    for s in range(senders):
        await store.cache_channel(10_000 + s, [s + 1, s + 1001])
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def sender(s: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            started = time.perf_counter()
            outcome = await store.store_message(
                sender_id=s + 1,
                channel_id=10_000 + s,
                message_id=ids.next_id(),
                client_msg_id=f"{s}-{n}-{started}",
                text="x" * 100,
                created_ms=1,
                rate=1e9,
                burst=1_000_000_000,
            )
            latencies.append((time.perf_counter() - started) * 1000)  # what the ack waits for
            await store.fan_out(outcome.message, outcome.recipients)  # the inbox step after it

    began = time.perf_counter()
    await asyncio.gather(*(sender(s) for s in range(senders)))
    elapsed = time.perf_counter() - began
    return {
        "rate": len(latencies) / elapsed,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


async def run(seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fsync-bench-"))
    servers = {
        policy: redis_server(tmp / policy, fsync=policy) for policy in ("everysec", "always")
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for server in servers.values():
            server.start()
        for policy, server in servers.items():
            redis = redis_client.connect_any(f"redis://{server.address}/0")
            store = ChatStore(redis)
            results[policy] = {
                "lone": await drive(store, 1, seconds),
                "concurrent": await drive(store, CONCURRENT, seconds),
            }
            await redis.aclose()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"chat send path (ChatStore.store_message, 1:1 channels), {seconds:.0f} s per phase")
    for phase, label in (("lone", "one sender"), ("concurrent", f"{CONCURRENT} senders")):
        e, a = results["everysec"][phase], results["always"][phase]
        print(
            f"  {label}: everysec {e['rate']:.0f} sends/s (p50 {e['p50']:.2f} ms, "
            f"p99 {e['p99']:.2f} ms) | always {a['rate']:.0f} sends/s (p50 {a['p50']:.2f} "
            f"ms, p99 {a['p99']:.2f} ms) | ratio always/everysec {a['rate'] / e['rate']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    asyncio.run(run(parser.parse_args().seconds))


if __name__ == "__main__":
    main()

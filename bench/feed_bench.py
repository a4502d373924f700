#!/usr/bin/env python3
"""feed_svc benchmark: fanout against a raw Redis script, GetFeed latency, sustained posting.

    .venv/bin/python bench/feed_bench.py [--followers 10000] [--seconds 8]

Starts its own etcd, Redis and PostgreSQL (temporary folder, loopback), account_svc and
feed_svc as child processes (``python -m ...``, 4 fanout workers in feed_svc), and drives
them over gRPC from this process:

1. Fanout: one post to 10,000 active followers, CreatePost to the last feed written (the
   worker's finish time in the post's progress record). Baseline, same run: one Lua script
   inserting the same member into the same 10,000 capped feeds, nothing else.
2. Reads: GetFeed p50/p99 for 50 readers who each follow 1,000 authors (20 of them
   celebrities, merged at read time; the rest fanned out into full 800-entry caches):
   first at a steady offered load (each reader every 100 ms), then closed loop (each
   reader calls again at once) to show the saturation throughput.
3. Sustained: authors with 100 active followers each post as fast as 16 clients can for a
   few seconds, then at 80% of the fanout rate measured there; the fanout queue's length is
   printed every second (it must level off, not grow).
4. Worker death: a chunk job (1,000 followers) read by a consumer that never acknowledges
   (a worker killed right after reading it) until another worker claimed and finished it,
   against the same job worked at once (``--claim-idle`` sets feed_svc's claim idle).

With ``--redis-cluster N`` part 1 also starts a Redis Cluster of N masters (one replica
each, the pip binary, same machine) and a second feed_svc on it, and fans the same post
out to the same number of followers there, rounds alternating with the one-node
feed_svc's: the ratio is cluster/node in the same run.

Setup writes the follow graph straight into Redis (through feed_svc.store's key builders)
instead of 60,000 Follow RPCs; everything measured goes through the services.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis

from feed_svc import scripts
from feed_svc.keys import (
    ACTIVE_KEY,
    GROUP,
    JOBS_KEY,
    feed_key,
    followers_key,
    following_key,
    pad,
    progress_key,
)
from feedchat.account.v1 import account_pb2, account_pb2_grpc
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat.feed.v1 import feed_pb2_grpc
from feedchat_local.embedded import (
    etcd_server,
    free_port,
    postgres_server,
    postgres_url,
    redis_server,
    wait_for_port,
)
from feedchat_local.embedded_cluster import RedisClusterNodes
from feedchat_runtime.auth import authority_from_config
from feedchat_runtime.redis_client import RedisClient, connect, connect_any

ROOT = Path(__file__).resolve().parent.parent
AUTHORITY = authority_from_config("", "", dev=True)
TOKENS: dict[int, tuple[tuple[str, str], ...]] = {}


def md(user: int) -> tuple[tuple[str, str], ...]:
    if user not in TOKENS:
        TOKENS[user] = (("authorization", f"Bearer {AUTHORITY.issue_access(user).token}"),)
    return TOKENS[user]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


class Child:
    """A feedchat service in its own process, as `feedchat up` would start it."""

    def __init__(self, module: str, args: list[str], log: Path) -> None:
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            module,
            "--port",
            str(self.port),
            *args,
            "--log-format",
            "text",
            "--log-level",
            "WARNING",
        ]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=out, env=dict(os.environ)
            )
        wait_for_port("127.0.0.1", self.port, 30, self.process)  # type: ignore[arg-type]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def gather_limited(limit: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


async def sign_up(accounts: account_pb2_grpc.AccountServiceStub, prefix: str, n: int) -> list[int]:
    async def one(i: int) -> int:
        reply = await accounts.SignUp(
            account_pb2.SignUpRequest(
                username=f"{prefix}{i}", password="benchmark password", display_name=f"{prefix} {i}"
            )
        )
        return int(reply.user_id)

    return await gather_limited(16, [lambda i=i: one(i) for i in range(n)])


async def follow_bulk(redis: RedisClient, pairs: list[tuple[int, int]]) -> None:
    """(follower, author) edges written the way Follow stores them."""
    for start in range(0, len(pairs), 5000):
        pipe = redis.pipeline(transaction=False)
        for follower, author in pairs[start : start + 5000]:
            pipe.zadd(following_key(follower), {pad(author): 0})
            pipe.zadd(followers_key(author), {pad(follower): 0})
        await pipe.execute()


async def mark_active(redis: RedisClient, users: list[int]) -> None:
    stamp = now_ms()
    for start in range(0, len(users), 5000):
        await redis.hset(ACTIVE_KEY, mapping={str(u): stamp for u in users[start : start + 5000]})


async def wait_idle_queue(redis: aioredis.Redis, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await redis.xlen(JOBS_KEY):
            return
        await asyncio.sleep(0.05)


async def fanout_seconds(
    feed: feed_pb2_grpc.FeedServiceStub, redis: RedisClient, author: int, text: str
) -> float:
    """CreatePost to the last feed written (the worker's finish time in the progress)."""
    started = now_ms()
    reply = await feed.CreatePost(pb.CreatePostRequest(text=text), metadata=md(author))
    key = progress_key(reply.post.post_id)
    while True:  # polled: the finish time itself comes from the worker's record
        finished = await redis.hget(key, "finished_ms")
        if finished is not None:
            return (int(finished) - started) / 1000
        await asyncio.sleep(0.001)


async def bench_fanout(
    feed: feed_pb2_grpc.FeedServiceStub,
    redis: RedisClient,
    author: int,
    followers: int,
    rounds: int,
    cluster: tuple[feed_pb2_grpc.FeedServiceStub, RedisClient, int] | None = None,
) -> None:
    fans = list(range(10_000_000, 10_000_000 + followers))
    targets = [redis] if cluster is None else [redis, cluster[1]]
    for client in targets:
        await follow_bulk(client, [(f, author) for f in fans])
        await mark_active(client, fans)
    raw = redis.register_script(scripts.RAW_INSERT_BASELINE)
    keys = [feed_key(f) for f in fans]
    service: list[float] = []
    baseline: list[float] = []
    on_cluster: list[float] = []
    # Service and baseline rounds alternate, so both see the same background load.
    for i in range(rounds):
        service.append(await fanout_seconds(feed, redis, author, f"fanout {i}"))
        if cluster is not None:
            on_cluster.append(await fanout_seconds(cluster[0], cluster[1], author, f"c {i}"))
        member = f"{pad(i + 1)}:{author}"
        started_s = time.perf_counter()
        await raw(keys=keys, args=[member, 800])
        baseline.append(time.perf_counter() - started_s)
    ratios = [b / s for b, s in zip(baseline, service, strict=True)]
    svc, base = statistics.median(service), statistics.median(baseline)
    print(f"\n[1] fanout of one post to {followers} active followers (median of {rounds})")
    print(
        f"    service: CreatePost -> last feed written {svc * 1000:7.1f} ms "
        f"= {followers / svc:10,.0f} inserts/s"
    )
    print(
        f"    raw Lua baseline (same entries)         {base * 1000:7.1f} ms "
        f"= {followers / base:10,.0f} inserts/s"
    )
    print(
        f"    ratio service/baseline: {statistics.median(ratios):.2f} median of pairs "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})  (goal >= 0.5)"
    )
    if cluster is not None:
        clu = statistics.median(on_cluster)
        pairs = [n / c for n, c in zip(service, on_cluster, strict=True)]
        print(
            f"    service on a {cluster[2]}-master Redis Cluster   {clu * 1000:7.1f} ms "
            f"= {followers / clu:10,.0f} inserts/s"
        )
        print(
            f"    ratio cluster/node (throughput): {statistics.median(pairs):.2f} median of "
            f"pairs (min {min(pairs):.2f}, max {max(pairs):.2f})"
        )


async def read_latencies(
    feeds: list[feed_pb2_grpc.FeedServiceStub],
    readers: list[int],
    seconds: float,
    interval: float | None,
) -> tuple[list[float], float]:
    deadline = time.perf_counter() + seconds
    samples: list[float] = []

    async def reader_loop(user: int, offset: float) -> None:
        feed = feeds[user % len(feeds)]
        await asyncio.sleep(offset)
        token = ""
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            reply = await feed.GetFeed(
                pb.GetFeedRequest(page_size=20, page_token=token), metadata=md(user)
            )
            took = time.perf_counter() - began
            samples.append(took)
            # Mostly first pages, every third call the next page.
            token = reply.next_page_token if not token and len(samples) % 3 == 0 else ""
            if interval is not None:
                await asyncio.sleep(max(0.0, interval - took))

    started = time.perf_counter()
    spread = interval or 0.0
    await asyncio.gather(
        *(reader_loop(u, spread * i / len(readers)) for i, u in enumerate(readers))
    )
    return samples, len(samples) / (time.perf_counter() - started)


async def bench_reads(
    feeds: list[feed_pb2_grpc.FeedServiceStub],
    accounts: account_pb2_grpc.AccountServiceStub,
    redis: aioredis.Redis,
    seconds: float,
) -> None:
    feed = feeds[0]
    authors = await sign_up(accounts, "author", 1000)
    readers = await sign_up(accounts, "reader", 50)
    celebrities = authors[:20]
    await follow_bulk(redis, [(r, a) for r in readers for a in authors])
    # Celebrities: more followers than the threshold (100) the feed server runs with.
    await follow_bulk(redis, [(20_000_000 + i, c) for c in celebrities for i in range(100)])
    for reader in readers:
        await feed.GetFeed(pb.GetFeedRequest(), metadata=md(reader))  # active from now on
    posts = [(a, f"post by {a}") for a in authors[20:]]
    posts += [(c, f"celebrity post {k} by {c}") for c in celebrities for k in range(10)]
    await gather_limited(
        16,
        [
            lambda a=a, t=t: feed.CreatePost(pb.CreatePostRequest(text=t), metadata=md(a))
            for a, t in posts
        ],
    )
    await wait_idle_queue(redis)
    sizes = [await redis.zcard(feed_key(r)) for r in readers[:3]]
    print(
        f"\n[2] GetFeed, 50 readers x 1000 followed authors (20 celebrities); "
        f"cache sizes {sizes}; {len(feeds)} feed_svc process(es)"
    )
    for label, interval in (
        ("every 250 ms per reader", 0.25),
        ("every 100 ms per reader", 0.1),
        ("closed loop", None),
    ):
        samples, throughput = await read_latencies(feeds, readers, seconds, interval)
        print(
            f"    {label:24s}: {len(samples):6d} calls {throughput:7.0f}/s  "
            f"p50 {pct(samples, 50) * 1000:6.1f} ms  p99 {pct(samples, 99) * 1000:6.1f} ms"
            + ("  (goal p99 <= 25 ms)" if interval else "")
        )


async def bench_sustained(
    feed: feed_pb2_grpc.FeedServiceStub,
    redis: aioredis.Redis,
    accounts: account_pb2_grpc.AccountServiceStub,
    seconds: float,
) -> None:
    posters = await sign_up(accounts, "poster", 200)
    pairs = [(30_000_000 + p * 100 + i, a) for p, a in enumerate(posters) for i in range(100)]
    await follow_bulk(redis, pairs)
    await mark_active(redis, [f for f, _ in pairs])
    print("\n[3] sustained posting, 100 active followers per author")

    async def phase(label: str, secs: float, rate: float | None) -> float:
        deadline = time.perf_counter() + secs
        counter = {"posted": 0}
        done_before = await fanouts_done()

        async def client(k: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                author = posters[(k * 7919 + i) % len(posters)]
                i += 1
                began = time.perf_counter()
                await feed.CreatePost(pb.CreatePostRequest(text="sustained"), metadata=md(author))
                counter["posted"] += 1
                if rate is not None:
                    await asyncio.sleep(max(0.0, 16 / rate - (time.perf_counter() - began)))

        async def monitor() -> None:
            second = 0
            while time.perf_counter() < deadline:
                await asyncio.sleep(1.0)
                second += 1
                print(
                    f"      t={second:2d}s posted {counter['posted']:6d}  "
                    f"queue length {await redis.xlen(JOBS_KEY):5d}"
                )

        started = time.perf_counter()
        await asyncio.gather(monitor(), *(client(k) for k in range(16)))
        elapsed = time.perf_counter() - started
        fanned = await fanouts_done() - done_before
        print(
            f"    {label}: {counter['posted'] / elapsed:7.0f} posts/s accepted, "
            f"{fanned / elapsed:7.0f} posts/s fanned out "
            f"({fanned * 100 / elapsed:,.0f} feed inserts/s)"
        )
        return fanned / elapsed

    finished: set[bytes] = set()

    async def fanouts_done() -> int:
        cursor = 0
        while True:
            cursor, keys = await redis.scan(cursor, match="feed:{fanout}:post:*", count=5000)
            pipe = redis.pipeline(transaction=False)
            for key in keys:
                pipe.hexists(key, "finished_ms")
            for key, done in zip(keys, await pipe.execute(), strict=True):
                if done:
                    finished.add(key)
            if cursor == 0:
                return len(finished)

    await fanouts_done()
    capacity = await phase("as fast as 16 clients can", seconds, None)
    await wait_idle_queue(redis)
    await phase(f"paced at {0.8 * capacity:.0f} posts/s", seconds, 0.8 * capacity)
    await wait_idle_queue(redis)
    print(f"    queue length after draining: {await redis.xlen(JOBS_KEY)}")


async def bench_claim(
    feed: feed_pb2_grpc.FeedServiceStub,
    redis: aioredis.Redis,
    accounts: account_pb2_grpc.AccountServiceStub,
    rounds: int,
) -> None:
    """A fanout job whose worker died right after reading it (as after a SIGKILL): time
    until another worker claimed and finished it, against the same job worked at once."""
    (author,) = await sign_up(accounts, "claimed", 1)
    reply = await feed.CreatePost(pb.CreatePostRequest(text="claimed"), metadata=md(author))
    post = reply.post.post_id  # posted before it had followers: no job of its own
    fans = list(range(40_000_000, 40_001_000))
    await follow_bulk(redis, [(f, author) for f in fans])
    await mark_active(redis, fans)
    key = progress_key(post)
    delays: dict[str, list[float]] = {"live": [], "dead": []}
    for _ in range(rounds):
        for kind in ("live", "dead"):
            await wait_idle_queue(redis)
            pipe = redis.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "created_ms": now_ms(),
                    "state": "fanout",
                    "total": len(fans),
                    "chunks": 1,
                },
            )
            pipe.xadd(
                JOBS_KEY, {"kind": "chunk", "post": post, "author": author, "from": "", "to": ""}
            )
            if kind == "dead":  # read by a consumer that never comes back
                pipe.xreadgroup(GROUP, "dead-worker", {JOBS_KEY: ">"}, count=1)
            started = now_ms()
            await pipe.execute()
            while True:  # polled: the finish time itself comes from the worker's record
                finished = await redis.hget(key, "finished_ms")
                if finished is not None:
                    break
                await asyncio.sleep(0.005)
            delays[kind].append((int(finished) - started) / 1000)
    live, dead = statistics.median(delays["live"]), statistics.median(delays["dead"])
    print(
        f"\n[4] a fanout job (1,000 followers) whose worker died after reading it "
        f"(median of {rounds})"
    )
    print(f"    worked at once by a live worker      {live * 1000:8.0f} ms")
    print(
        f"    claimed from the dead worker, done   {dead * 1000:8.0f} ms "
        f"(min {min(delays['dead']) * 1000:.0f}, max {max(delays['dead']) * 1000:.0f})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--parts", default="1,2,3,4", help="which measurements to run")
    parser.add_argument(
        "--claim-idle",
        type=float,
        default=0.0,
        help="feed_svc --fanout-claim-idle for part 4 (0: its default)",
    )
    parser.add_argument(
        "--read-servers", type=int, default=1, help="feed_svc processes serving the GetFeed readers"
    )
    parser.add_argument(
        "--redis-cluster",
        type=int,
        default=0,
        help="part 1 also on a Redis Cluster of this many masters (0: not)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        etcd, redis_proc = etcd_server(Path(tmp) / "etcd"), redis_server(Path(tmp) / "redis")
        postgres = postgres_server(Path(tmp) / "postgres")
        etcd.start()
        redis_proc.start()
        postgres.start()
        redis_url = f"redis://{redis_proc.address}/0"
        common = [
            "--etcd",
            etcd.address,
            "--redis-url",
            redis_url,
            "--dev",
            "--postgres-url",
            postgres_url(postgres),
        ]
        children: list[Child] = []
        redis = connect(redis_url)  # the same client (hiredis packer) as feed_svc
        try:
            account = Child(
                "account_svc",
                [
                    *common,
                    "--instance",
                    "account-0",
                    "--argon2-time-cost",
                    "1",
                    "--argon2-memory-kib",
                    "1024",
                    "--argon2-parallelism",
                    "1",
                    "--signup-max-per-peer",
                    "1000000000",
                ],
                Path(tmp) / "a.log",
            )
            children.append(account)
            accounts = account_pb2_grpc.AccountServiceStub(
                grpc.aio.insecure_channel(account.address)
            )
            feed_args = [
                *common,
                "--post-burst",
                "100000",
                "--post-rate",
                "100000",
                "--fanout-workers",
                "16",
            ]
            if args.claim_idle:
                feed_args += ["--fanout-claim-idle", str(args.claim_idle)]
            server = Child(
                "feed_svc",
                [*feed_args, "--instance", "feed-0", "--celebrity-threshold", "1000000"],
                Path(tmp) / "f.log",
            )
            children.append(server)
            feed = feed_pb2_grpc.FeedServiceStub(grpc.aio.insecure_channel(server.address))
            (author,) = await sign_up(accounts, "fanout", 1)
            if "1" in parts and args.redis_cluster:
                nodes = RedisClusterNodes(Path(tmp) / "redis-cluster", args.redis_cluster)
                nodes.start()
                on_cluster = Child(
                    "feed_svc",
                    [*feed_args, "--instance", "feed-c", "--celebrity-threshold", "1000000"]
                    + ["--redis-url", nodes.url],
                    Path(tmp) / "fc.log",
                )
                cluster_redis = connect_any(nodes.url)
                try:
                    cluster_feed = feed_pb2_grpc.FeedServiceStub(
                        grpc.aio.insecure_channel(on_cluster.address)
                    )
                    await bench_fanout(
                        feed,
                        redis,
                        author,
                        args.followers,
                        args.rounds,
                        (cluster_feed, cluster_redis, args.redis_cluster),
                    )
                finally:
                    await cluster_redis.aclose()
                    on_cluster.stop()
                    nodes.stop()
            elif "1" in parts:
                await bench_fanout(feed, redis, author, args.followers, args.rounds)
            if "3" in parts:
                await bench_sustained(feed, redis, accounts, args.seconds / 2)
            if "4" in parts:
                await bench_claim(feed, redis, accounts, 3)
            if "2" not in parts:
                return
            server.stop()
            children.remove(server)
            await redis.delete(JOBS_KEY)
            feeds = []
            for k in range(args.read_servers):
                server = Child(
                    "feed_svc",
                    [*feed_args, "--instance", f"feed-r{k}", "--celebrity-threshold", "100"],
                    Path(tmp) / "f.log",
                )
                children.append(server)
                feeds.append(
                    feed_pb2_grpc.FeedServiceStub(grpc.aio.insecure_channel(server.address))
                )
            await bench_reads(feeds, accounts, redis, args.seconds)
        finally:
            await redis.aclose()
            for child in children:
                child.stop()
            redis_proc.stop()
            postgres.stop()
            etcd.stop()
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())

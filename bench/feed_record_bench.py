#!/usr/bin/env python3
"""feed_svc with PostgreSQL as the record: Follow against a bare INSERT, GetFeed on a cold cache.

    .venv/bin/python bench/feed_record_bench.py [--seconds 6] [--concurrency 16]

Starts its own etcd, Redis and PostgreSQL (temporary folder, loopback; PostgreSQL durable,
fsync on), account_svc and feed_svc as child processes (as bench/feed_bench.py does), and
drives them over gRPC from this process:

1. Follow throughput: ``--concurrency`` clients call Follow (each a new edge: an existence
   check of the author through account_svc's cache, one PostgreSQL transaction, the Redis
   caches) for ``--seconds``. Baseline, same run: bare single-row INSERTs into a copy of the
   follows table on the same PostgreSQL, one transaction each, at the same concurrency.
2. GetFeed after Redis is wiped: the read set-up of feed_bench part 2 (50 readers x 1,000
   followed authors, 20 of them celebrities with 100 more followers each, 1,180 posts), but
   with the graph written into PostgreSQL (the record), so a FLUSHALL loses only caches.
   Each reader reads every 250 ms for ``--seconds`` on warm caches (the baseline), then
   Redis is wiped and the same phase runs again: the first reads refill the graph caches
   from PostgreSQL (one instance, keyset pages) and pull each reader's page at read time
   while its cache is rebuilt behind.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc
from feed_bench import Child, md, pct, read_latencies, sign_up, wait_idle_queue

from feedchat.account.v1 import account_pb2_grpc
from feedchat.feed.v1 import feed_pb2 as pb
from feedchat.feed.v1 import feed_pb2_grpc
from feedchat_local.embedded import etcd_server, postgres_server, postgres_url, redis_server
from feedchat_runtime.redis_client import connect

PERIOD = 0.25
"""Seconds between one reader's GetFeed calls (the feed goal's offered load)."""


async def follow_throughput(
    feed: feed_pb2_grpc.FeedServiceStub,
    accounts: account_pb2_grpc.AccountServiceStub,
    url: str,
    seconds: float,
    concurrency: int,
) -> None:
    authors = await sign_up(accounts, "followed", 2000)
    followers = await sign_up(accounts, "follower", concurrency)
    done = [0]

    async def client(follower: int) -> None:
        deadline = time.perf_counter() + seconds
        for author in authors:
            if time.perf_counter() >= deadline:
                return
            await feed.Follow(pb.FollowRequest(user_id=author), metadata=md(follower))
            done[0] += 1

    for follower in followers:  # warm the author cache and the connections first
        await feed.Follow(pb.FollowRequest(user_id=authors[0]), metadata=md(follower))
    started = time.perf_counter()
    await asyncio.gather(*(client(f) for f in followers))
    follows = done[0] / (time.perf_counter() - started)

    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    try:
        await pool.execute("CREATE TABLE bench_follows (LIKE follows INCLUDING ALL)")
        inserted = [0]

        async def insert_loop(follower: int) -> None:
            deadline = time.perf_counter() + seconds
            author = 0
            while time.perf_counter() < deadline:
                author += 1
                await pool.execute(
                    "INSERT INTO bench_follows (follower_id, author_id, created_ms) "
                    "VALUES ($1, $2, $3)",
                    follower,
                    author,
                    0,
                )
                inserted[0] += 1

        started = time.perf_counter()
        await asyncio.gather(*(insert_loop(1_000_000 + k) for k in range(concurrency)))
        bare = inserted[0] / (time.perf_counter() - started)
    finally:
        await pool.close()
    print(f"\n[1] Follow, {concurrency} concurrent clients, {seconds:.0f} s each side")
    print(f"    Follow RPC (new edges)        {follows:8.1f} /s")
    print(f"    bare INSERT, 1 row/txn        {bare:8.1f} /s   (baseline, same PostgreSQL)")
    print(f"    ratio Follow/INSERT: {follows / bare:.2f}")


async def cold_reads(
    feed: feed_pb2_grpc.FeedServiceStub,
    accounts: account_pb2_grpc.AccountServiceStub,
    redis_url: str,
    url: str,
    seconds: float,
) -> None:
    authors = await sign_up(accounts, "author", 1000)
    readers = await sign_up(accounts, "reader", 50)
    celebrities = authors[:20]
    rows = [(r, a, 0) for r in readers for a in authors]
    rows += [(30_000_000 + i, c, 0) for c in celebrities for i in range(100)]
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "follows", records=rows, columns=["follower_id", "author_id", "created_ms"]
        )
    finally:
        await conn.close()
    redis = connect(redis_url)
    try:
        await redis.flushall()  # the caches refill from the record just written
        for reader in readers:
            await feed.GetFeed(pb.GetFeedRequest(), metadata=md(reader))  # active from now on
        posts = [(a, f"post by {a}") for a in authors[20:]]
        posts += [(c, f"celebrity post {k} by {c}") for c in celebrities for k in range(10)]
        gate = asyncio.Semaphore(16)

        async def post(author: int, text: str) -> None:
            async with gate:
                await feed.CreatePost(pb.CreatePostRequest(text=text), metadata=md(author))

        await asyncio.gather(*(post(a, t) for a, t in posts))
        await wait_idle_queue(redis)
        print("    (reading on warm caches)", flush=True)
        warm, warm_rate = await read_latencies([feed], readers, seconds, PERIOD)
        await redis.flushall()
        print("    (Redis wiped; reading again)", flush=True)
        cold, cold_rate = await read_latencies([feed], readers, seconds, PERIOD)
        first_reads = sorted(cold[: len(readers)])
    finally:
        await redis.aclose()
    print(
        "\n[2] GetFeed, 50 readers x 1000 followed authors (20 celebrities), "
        f"each every {PERIOD * 1000:.0f} ms"
    )
    print(
        f"    warm caches (baseline)   : {len(warm):5d} calls {warm_rate:5.0f}/s  "
        f"p50 {pct(warm, 50) * 1000:6.1f} ms  p99 {pct(warm, 99) * 1000:6.1f} ms"
    )
    print(
        f"    after FLUSHALL (cold)    : {len(cold):5d} calls {cold_rate:5.0f}/s  "
        f"p50 {pct(cold, 50) * 1000:6.1f} ms  p99 {pct(cold, 99) * 1000:6.1f} ms  "
        "(goal p99 <= 25 ms)"
    )
    print(
        f"    the first {len(readers)} reads after the wipe: p50 "
        f"{pct(first_reads, 50) * 1000:.1f} ms  max {first_reads[-1] * 1000:.1f} ms"
    )
    print(f"    ratio cold/warm p99: {pct(cold, 99) / pct(warm, 99):.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--parts", default="1,2", help="which measurements to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        etcd, redis_proc = etcd_server(Path(tmp) / "etcd"), redis_server(Path(tmp) / "redis")
        postgres = postgres_server(Path(tmp) / "postgres")
        for server in (etcd, redis_proc, postgres):
            server.start()
        redis_url, url = f"redis://{redis_proc.address}/0", postgres_url(postgres)
        common = ["--etcd", etcd.address, "--redis-url", redis_url, "--dev"]
        common += ["--postgres-url", url]
        children: list[Child] = []
        try:
            cheap_hash = ["--argon2-time-cost", "1", "--argon2-memory-kib", "1024"]
            cheap_hash += ["--argon2-parallelism", "1", "--signup-max-per-peer", "1000000000"]
            account = Child(
                "account_svc", [*common, "--instance", "account-0", *cheap_hash], Path(tmp) / "a"
            )
            children.append(account)
            accounts = account_pb2_grpc.AccountServiceStub(
                grpc.aio.insecure_channel(account.address)
            )
            unlimited = ["--post-burst", "100000", "--post-rate", "100000"]
            unlimited += ["--max-following", "100000", "--fanout-workers", "16"]
            server = Child(
                "feed_svc",
                [*common, *unlimited, "--instance", "feed-0", "--celebrity-threshold", "100"],
                Path(tmp) / "f",
            )
            children.append(server)
            feed = feed_pb2_grpc.FeedServiceStub(grpc.aio.insecure_channel(server.address))
            if "1" in parts:
                await follow_throughput(feed, accounts, url, args.seconds, args.concurrency)
            if "2" in parts:
                await cold_reads(feed, accounts, redis_url, url, args.seconds)
        except Exception:
            for log in ("a", "f"):  # what the services said, before the folder goes
                print(f"--- {log} log (tail)\n" + (Path(tmp) / log).read_text()[-4000:])
            raise
        finally:
            for child in children:
                child.stop()
            for server in (redis_proc, postgres, etcd):
                server.stop()
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())

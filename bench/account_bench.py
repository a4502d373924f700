#!/usr/bin/env python3
"""account_svc benchmark: login cost against raw argon2, batch lookup against single reads.

    .venv/bin/python bench/account_bench.py [--seconds 5] [--concurrency 8]

Starts its own etcd, Redis and PostgreSQL (temporary folder, loopback) and one account_svc in this
process with the production argon2id defaults, then measures, each for ``--seconds``:

1. raw argon2id verifications/s in a pool of ``hash_workers`` threads (baseline) vs Login
   RPCs/s through gRPC, the guard, the rate-limit scripts and token signing;
2. sequential GetProfile calls (baseline, one user per call) vs GetUsers with 100 ids:
   users hydrated per second;
3. latency of GetProfile vs the gRPC health check (baseline: an RPC that does nothing);
4. SignUp RPCs/s with cheap argon2 (so the figure is the storage path: one PostgreSQL
   transaction for user, credential and profile, one for the refresh token) vs single-row
   INSERTs, one transaction each, on the same PostgreSQL at the same concurrency (baseline).
Client and server share this process and the machine's cores, so absolute numbers are
conservative; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import argon2
import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from account_svc.app import build
from account_svc.config import AccountConfig
from feedchat.account.v1 import account_pb2 as pb
from feedchat.account.v1 import account_pb2_grpc
from feedchat_local.embedded import etcd_server, postgres_server, postgres_url, redis_server
from feedchat_runtime.config import load_config

PASSWORD = "benchmark password"
USERS = 100


async def rate(seconds: float, concurrency: int, op: Callable[[], Awaitable[int]]) -> float:
    """Units/s that ``concurrency`` loops calling ``op`` (returning units done) achieve."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            units = await op()  # not `done += await op()`: that reads `done` before awaiting
            done += units

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def latencies(seconds: float, op: Callable[[], Awaitable[object]]) -> list[float]:
    deadline = time.perf_counter() + seconds
    samples = []
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await op()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


async def run(seconds: float, concurrency: int, folder: Path) -> None:
    etcd, redis = etcd_server(folder), redis_server(folder, appendonly=True)
    postgres = postgres_server(folder)
    etcd.start()
    redis.start()
    postgres.start()
    try:
        config = load_config(
            AccountConfig,
            [],
            env={},
            etcd=etcd.address,
            redis_url=f"redis://{redis.address}/0",
            dev=True,
            postgres_url=postgres_url(postgres),
            log_level="WARNING",
            log_format="text",
            login_max_per_peer=10**9,
            login_max_per_username=10**9,
            signup_max_per_peer=10**9,
        )
        host = await build(config)
        await host.start()
        try:
            await measure(config, host.address, seconds, concurrency)
        finally:
            await host.stop()
        # Sign-up's storage path: cheap hashing, so the figure is PostgreSQL's share.
        cheap = replace(
            config,
            argon2_time_cost=1,
            argon2_memory_kib=64,
            argon2_parallelism=1,
            instance="bench-cheap",
        )
        host = await build(cheap)
        await host.start()
        try:
            await measure_signup(host.address, postgres_url(postgres), seconds, concurrency)
        finally:
            await host.stop()
    finally:
        postgres.stop()
        etcd.stop()
        redis.stop()


async def measure(config: AccountConfig, address: str, seconds: float, concurrency: int) -> None:
    print(
        f"argon2id t={config.argon2_time_cost} m={config.argon2_memory_kib}KiB "
        f"p={config.argon2_parallelism}, hash_workers={config.hash_workers}, "
        f"concurrency={concurrency}, {seconds:.0f}s per figure"
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        users = []
        for i in range(USERS):
            users.append(
                await stub.SignUp(pb.SignUpRequest(username=f"bench{i:03d}", password=PASSWORD))
            )
        auth = (("authorization", f"Bearer {users[0].access_token}"),)
        ids = [u.user_id for u in users]

        # 1. argon2 alone vs Login.
        hasher = argon2.PasswordHasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
        )
        stored = hasher.hash(PASSWORD)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(config.hash_workers) as pool:

            async def verify() -> int:
                await loop.run_in_executor(pool, hasher.verify, stored, PASSWORD)
                return 1

            raw = await rate(seconds, concurrency, verify)

        counter = iter(range(10**9))

        async def login() -> int:
            name = f"bench{next(counter) % USERS:03d}"
            await stub.Login(pb.LoginRequest(username=name, password=PASSWORD))
            return 1

        logins = await rate(seconds, concurrency, login)
        print(f"raw argon2id verify:         {raw:8.1f} /s   (baseline)")
        print(f"Login RPC:                   {logins:8.1f} /s   ratio {logins / raw:.2f}")

        # 2. one-by-one GetProfile vs GetUsers(100).
        async def one_profile() -> int:
            await stub.GetProfile(
                pb.GetProfileRequest(user_id=ids[next(counter) % USERS]), metadata=auth
            )
            return 1

        async def batch() -> int:
            reply = await stub.GetUsers(pb.GetUsersRequest(user_ids=ids), metadata=auth)
            return len(reply.users)

        singles = await rate(seconds, concurrency, one_profile)
        batched = await rate(seconds, concurrency, batch)
        print(f"GetProfile, 1 user/call:     {singles:8.1f} users/s (baseline)")
        print(f"GetUsers, 100 users/call:    {batched:8.1f} users/s ratio {batched / singles:.1f}")

        # 3. latency of a Redis-backed read vs an RPC doing nothing.
        health = health_pb2_grpc.HealthStub(channel)
        base = await latencies(seconds / 2, lambda: health.Check(health_pb2.HealthCheckRequest()))
        prof = await latencies(
            seconds / 2, lambda: stub.GetProfile(pb.GetProfileRequest(), metadata=auth)
        )
        print(
            f"health Check latency:        p50 {pct(base, 50):6.2f} ms  p99 {pct(base, 99):6.2f}"
            " ms (baseline)"
        )
        print(
            f"GetProfile latency:          p50 {pct(prof, 50):6.2f} ms  p99 {pct(prof, 99):6.2f}"
            f" ms  p50 ratio {pct(prof, 50) / pct(base, 50):.2f}"
        )


async def measure_signup(address: str, url: str, seconds: float, concurrency: int) -> None:
    """SignUp (one transaction: user, credential, profile; then the refresh token) against
    single-row INSERTs, each its own transaction, on the same PostgreSQL."""
    db = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    assert db is not None
    await db.execute("CREATE TABLE bench_rows (id bigint PRIMARY KEY, name text NOT NULL)")
    ids = iter(range(1, 10**9))

    async def insert() -> int:
        row = next(ids)
        await db.execute("INSERT INTO bench_rows VALUES ($1, $2)", row, f"row{row}")
        return 1

    try:
        bare = await rate(seconds, concurrency, insert)
    finally:
        await db.close()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        names = iter(range(10**9))

        async def sign_up() -> int:
            await stub.SignUp(pb.SignUpRequest(username=f"new{next(names):07d}", password=PASSWORD))
            return 1

        signups = await rate(seconds, concurrency, sign_up)
    print(f"bare INSERT, 1 row/txn:      {bare:8.1f} /s   (baseline, same PostgreSQL)")
    print(f"SignUp (argon2 t=1 m=64KiB): {signups:8.1f} /s   ratio {signups / bare:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="account-bench-") as folder:
        asyncio.run(run(args.seconds, args.concurrency, Path(folder)))
    print(f"total wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""account_svc benchmark: login cost against raw argon2, batch lookup against single reads.

    .venv/bin/python bench/account_bench.py [--seconds 5] [--concurrency 8]

Starts its own etcd and Redis (temporary folder, loopback) and one account_svc in this
process with the production argon2id defaults, then measures, each for ``--seconds``:

1. raw argon2id verifications/s in a pool of ``hash_workers`` threads (baseline) vs Login
   RPCs/s through gRPC, the guard, the rate-limit scripts and token signing;
2. sequential GetProfile calls (baseline, one user per call) vs GetUsers with 100 ids:
   users hydrated per second;
3. latency of GetProfile vs the gRPC health check (baseline: an RPC that does nothing).
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
from pathlib import Path

import argon2
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from account_svc.app import build
from account_svc.config import AccountConfig
from feedchat.account.v1 import account_pb2 as pb
from feedchat.account.v1 import account_pb2_grpc
from feedchat_runtime.config import load_config
from feedchat_runtime.embedded import etcd_server, redis_server

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
    etcd.start()
    redis.start()
    try:
        config = load_config(
            AccountConfig, [], env={},
            etcd=etcd.address, redis_url=f"redis://{redis.address}/0", dev=True,
            log_level="WARNING", log_format="text",
            login_max_per_peer=10**9, login_max_per_username=10**9,
        )
        host = await build(config)
        await host.start()
        try:
            await measure(config, host.address, seconds, concurrency)
        finally:
            await host.stop()
    finally:
        etcd.stop()
        redis.stop()


async def measure(config: AccountConfig, address: str, seconds: float, concurrency: int) -> None:
    print(f"argon2id t={config.argon2_time_cost} m={config.argon2_memory_kib}KiB "
          f"p={config.argon2_parallelism}, hash_workers={config.hash_workers}, "
          f"concurrency={concurrency}, {seconds:.0f}s per figure")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        users = []
        for i in range(USERS):
            users.append(await stub.SignUp(
                pb.SignUpRequest(username=f"bench{i:03d}", password=PASSWORD)))
        auth = (("authorization", f"Bearer {users[0].access_token}"),)
        ids = [u.user_id for u in users]

        # 1. argon2 alone vs Login.
        hasher = argon2.PasswordHasher(
            time_cost=config.argon2_time_cost, memory_cost=config.argon2_memory_kib,
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
            await stub.GetProfile(pb.GetProfileRequest(user_id=ids[next(counter) % USERS]),
                                  metadata=auth)
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
        print(f"health Check latency:        p50 {pct(base, 50):6.2f} ms  p99 {pct(base, 99):6.2f}"
              " ms (baseline)")
        print(f"GetProfile latency:          p50 {pct(prof, 50):6.2f} ms  p99 {pct(prof, 99):6.2f}"
              f" ms  p50 ratio {pct(prof, 50) / pct(base, 50):.2f}")


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

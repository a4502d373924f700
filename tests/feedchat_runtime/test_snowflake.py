"""Snowflake ids: unique across processes, monotonic, exclusive worker ids, safe clocks."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from feedchat_local.embedded import EmbeddedServer
from feedchat_runtime.errors import Unavailable
from feedchat_runtime.registry import EtcdSession
from feedchat_runtime.snowflake import (
    SnowflakeGenerator,
    WorkerIdClaim,
    compose,
    timestamp_ms,
    worker_of,
)
from tests.feedchat_runtime import snowflake_worker
from tests.waiting import wait_until

WORKER = Path(snowflake_worker.__file__)


async def test_ids_unique_across_concurrent_processes(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    count = 30_000
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            etcd.address,
            etcd_prefix,
            str(count),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in processes))
    batches = [[int(line) for line in out.split()] for out, _ in outputs]
    assert all(len(batch) == count for batch in batches)
    for batch in batches:
        assert all(a < b for a, b in zip(batch, batch[1:])), "ids must increase per generator"
        assert len({worker_of(i) for i in batch}) == 1
    assert len({worker_of(batch[0]) for batch in batches}) == 4, "worker ids must be exclusive"
    everything = [i for batch in batches for i in batch]
    assert len(set(everything)) == len(everything)


async def test_worker_ids_are_exclusive_among_live_sessions(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    sessions = [EtcdSession(etcd.address, etcd_prefix, ttl=5) for _ in range(12)]
    try:
        claims = []
        for session in sessions:
            await session.start()
            claim = WorkerIdClaim(session)
            await claim.acquire()
            claims.append(claim.worker_id)
        assert len(set(claims)) == len(claims)
    finally:
        for session in sessions:
            await session.close()


def test_clock_going_backwards_never_repeats_an_id() -> None:
    readings = iter(
        [
            1_800_000_000_000,
            1_800_000_000_000,
            1_799_999_999_000,
            1_799_999_999_500,
            1_800_000_000_000,
            1_800_000_000_001,
        ]
    )
    generator = SnowflakeGenerator(lambda: 7, clock=lambda: next(readings))
    ids = [generator.next_id() for _ in range(6)]
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert timestamp_ms(ids[0]) == 1_800_000_000_000
    assert worker_of(ids[0]) == 7


def test_sequence_overflow_moves_to_next_millisecond() -> None:
    generator = SnowflakeGenerator(lambda: 1, clock=lambda: 1_800_000_000_000)
    ids = [generator.next_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert ids[-1] > compose(1_800_000_000_000, 1, 4095)


async def test_ids_stop_while_claim_is_lost_and_resume(
    private_etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    session = EtcdSession(private_etcd.address, etcd_prefix, ttl=2)
    await session.start()
    claim = WorkerIdClaim(session)
    await claim.acquire()
    generator = claim.generator()
    last = generator.next_id()
    try:
        private_etcd.stop()
        deadline = time.monotonic() + 5
        while True:  # within the TTL the claim lapses: ids stop rather than risk duplicates
            try:
                last = generator.next_id()
            except Unavailable:
                break
            assert time.monotonic() < deadline, "ids kept coming after the lease lapsed"
            await asyncio.sleep(0.05)
        private_etcd.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                resumed = generator.next_id()
                break
            except Unavailable:
                assert time.monotonic() < deadline, "ids did not resume after etcd returned"
                await asyncio.sleep(0.1)
        assert resumed > last
    finally:
        await session.close()


async def test_restart_on_a_clock_that_went_back_never_reissues_an_id(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    now = 1_900_000_000_000
    first = EtcdSession(etcd.address, etcd_prefix, ttl=2)
    await first.start()
    claim = WorkerIdClaim(first, clock=lambda: now, worker_ids=[7])
    await claim.acquire()
    issued = [claim.generator().next_id() for _ in range(10_000)]  # runs ~2 ms ahead
    await first.close()  # the worker id is free again at once (a crash frees it after the TTL)

    second = EtcdSession(etcd.address, etcd_prefix, ttl=2)
    await second.start()
    try:
        # the next holder of worker id 7 runs on a clock a minute behind
        again = WorkerIdClaim(second, clock=lambda: now - 60_000, worker_ids=[7])
        assert await again.acquire() == 7
        generator = again.generator()
        later = [generator.next_id() for _ in range(10_000)]
        assert min(later) > max(issued)
        assert {worker_of(i) for i in later} == {7}
        assert all(a < b for a, b in zip(later, later[1:]))
    finally:
        await second.close()


async def test_ids_wait_for_the_high_water_mark_when_the_clock_jumps_past_it(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    clock = [1_900_000_000_000]
    session = EtcdSession(etcd.address, etcd_prefix, ttl=2)
    await session.start()
    try:
        claim = WorkerIdClaim(session, clock=lambda: clock[0], window_ms=5_000)
        await claim.acquire()
        generator = claim.generator()
        before = generator.next_id()
        clock[0] += 6_000  # past the persisted mark: not an id until etcd holds a new one
        try:
            generator.next_id()
            raise AssertionError("an id beyond the persisted high-water mark was issued")
        except Unavailable as exc:
            assert exc.reason == "ID_GENERATOR_UNAVAILABLE"
        after = await wait_until(_next_id_or_none(generator), 10, "the mark to move on")
        assert after > before and timestamp_ms(after) == clock[0]
    finally:
        await session.close()


def _next_id_or_none(generator: SnowflakeGenerator) -> Callable[[], int | None]:
    def attempt() -> int | None:
        try:
            return generator.next_id()
        except Unavailable:
            return None

    return attempt

"""Snowflake ids: unique across processes, monotonic, exclusive worker ids, safe clocks."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from feedchat_runtime.embedded import EmbeddedServer
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

WORKER = Path(snowflake_worker.__file__)


async def test_ids_unique_across_concurrent_processes(
    etcd: EmbeddedServer, etcd_prefix: str
) -> None:
    count = 30_000
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), etcd.address, etcd_prefix, str(count),
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
    readings = iter([1_800_000_000_000, 1_800_000_000_000, 1_799_999_999_000,
                     1_799_999_999_500, 1_800_000_000_000, 1_800_000_000_001])
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

"""argon2id hashing: correct answers, and the event loop keeps running while it hashes."""

from __future__ import annotations

import asyncio

from account_svc.passwords import PasswordHashing


async def test_verify_accepts_the_password_and_rejects_others() -> None:
    hashing = PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1, workers=1)
    try:
        stored = await hashing.hash("the password")
        assert stored.startswith("$argon2id$")
        assert await hashing.verify(stored, "the password")
        assert not await hashing.verify(stored, "the passwore")
        assert not await hashing.verify("not a hash", "the password")
        assert not hashing.needs_rehash(stored)
        stronger = PasswordHashing(time_cost=2, memory_kib=1024, parallelism=1, workers=1)
        assert stronger.needs_rehash(stored)
        await stronger.close()
    finally:
        await hashing.close()


async def test_hashing_does_not_block_the_event_loop() -> None:
    # 64 MiB, 3 passes: long enough (100+ ms) that a loop blocked by it could not tick.
    hashing = PasswordHashing(time_cost=3, memory_kib=65536, parallelism=1, workers=1)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0)  # let the ticker start before the hash is submitted
        ticks = 0
        await hashing.hash("some password")
        ticks_during_hash = ticks
    finally:
        done.set()
        await task
        await hashing.close()
    assert ticks_during_hash >= 3

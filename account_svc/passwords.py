"""argon2id password hashing, off the event loop in a small bounded thread pool."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHashing:
    """Hashes and verifies passwords without blocking the event loop.

    The pool size bounds both CPU use and memory: each running hash holds
    ``memory_kib`` KiB, so a burst of logins queues instead of exhausting memory.
    """

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int, workers: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._dummy: str | None = None

    async def _run(self, fn: object, *args: str) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)  # type: ignore[arg-type]

    async def hash(self, password: str) -> str:
        return str(await self._run(self._hasher.hash, password))

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; False on a mismatch or an unreadable hash."""
        return bool(await self._run(self._verify_sync, password_hash, password))

    async def verify_nothing(self, password: str) -> None:
        """Spend the time a real verification takes (for unknown users: no timing leak)."""
        if self._dummy is None:
            self._dummy = await self.hash("feedchat-dummy-password")
        await self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return False

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

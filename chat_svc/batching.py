"""Group commit: concurrent calls that arrive together go to the backend as one call.

Under load, many Connect streams submit sends in the same event-loop tick. Instead of one
Redis round trip per send (one pooled connection, one write, one read and one wake-up
each), :class:`GroupCommit` collects what was submitted until the end of the current tick
and runs it as one batch; while ``max_inflight`` batches are outstanding, new items wait
and go together in the next one. At low load a batch holds one item and waits for nothing
but the end of the tick it was submitted in.

Each item keeps its own outcome: the batch function returns one result per item, in
order, where an exception instance fails just that item. If the whole call raises, every
item of that batch fails with it (the caller cannot tell which were stored, exactly as when
a single call's reply is lost; idempotent retries cover both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchFn = Callable[[list[T]], Awaitable[Sequence["R | BaseException"]]]


class GroupCommit(Generic[T, R]):
    """Coalesces concurrent :meth:`submit` calls into calls of ``run`` on lists of items."""

    def __init__(self, run: BatchFn[T, R], max_batch: int = 128, max_inflight: int = 2) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._inflight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, item: T) -> R:
        """Run ``item`` in the next batch; its own result (or exception)."""
        return await self.submit(item)

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        self._schedule(loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled and self._inflight < self._max_inflight:
            self._scheduled = True
            loop.call_soon(self._flush)  # end of this tick: same-tick arrivals join

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and self._inflight < self._max_inflight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} got {len(results)} results")
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller gave up (e.g. its stream ended)
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._inflight -= 1
            if self._pending:
                self._schedule(asyncio.get_running_loop())

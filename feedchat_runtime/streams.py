"""Redis Streams consumer groups: the commands once, and one worker loop over them.

:class:`ConsumerGroup` is one consumer of one group on one stream (either topology): it
creates the group (an existing one, ``BUSYGROUP``, is fine), reads new entries
(``XREADGROUP >``), claims entries other consumers left idle (``XAUTOCLAIM``), resets
the idle time of the entries it still owns (one script: ``XPENDING``, ``XCLAIM JUSTID``),
removes the names of consumers long idle (a dead worker's) and acknowledges (``XACK``,
then ``XDEL``: a done entry leaves the stream, so its length is the backlog).

:class:`StreamWorker` works a group's entries concurrently, at least once:

- it reads new entries whenever it has a free slot (at most ``concurrency`` at a time);
- every ``claim_interval`` seconds it sweeps with XAUTOCLAIM and takes entries idle for
  more than ``claim_idle`` seconds (a dead or stalled consumer's), then removes the names
  of consumers idle for ``consumer_expiry`` seconds that hold nothing;
- every ``claim_idle / 3`` seconds it touches the entries it still works on, so a job
  that is merely slow (or waiting between retries) is not stolen; one stolen anyway (a
  long pause) is cancelled here;
- a handler that raises leaves its entry pending, for a later claim sweep;
- Redis losing the group (a restart without data, ``NOGROUP``) creates it again;
- :meth:`StreamWorker.step` does one round of this by hand (tests, tools).

The handler decides when an entry is done and acknowledges it itself (usually together
with its own writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text

logger = logging.getLogger(__name__)

Fields = dict[bytes, bytes]
Entry = tuple[str, Fields | None]
"""A stream entry: id and fields (None when the entry was deleted while pending)."""
Handler = Callable[[str, Fields | None], Awaitable[None]]
"""Works one entry (fields None: deleted while pending, only its acknowledgement is left)."""

STOP_WAIT_S = 5.0
"""How long :meth:`StreamWorker.stop` waits for its loops: a cancel absorbed by a blocking
read (a cluster client may) ends the loop at its next turn instead."""

TOUCH = """
-- Reset the idle time of the entries a consumer still owns, so no one claims them; an
-- entry another consumer claimed meanwhile is left to that one.
-- KEYS[1] stream   ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- Returns the ids still owned (and touched).
local owned = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then owned[#owned + 1] = ARGV[i] end
end
if #owned > 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(owned), 'JUSTID')
end
return owned
"""

SOURCES = {"touch": TOUCH}
"""The scripts of the consumer groups (:class:`feedchat_runtime.lua.LuaScripts`)."""


def _entries(raw: Any) -> list[Entry]:
    # Redis 6.2's XAUTOCLAIM answers (nil, nil) for a pending entry deleted meanwhile:
    # such rows carry no id and are dropped here (see ConsumerGroup.ack_deleted).
    return [(text(entry_id), fields or None) for entry_id, fields in raw or [] if entry_id]


class ConsumerGroup:
    """Consumer ``consumer`` of group ``group`` on stream ``stream``."""

    def __init__(self, redis: RedisClient, stream: str, group: str, consumer: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.scripts = LuaScripts(redis, SOURCES)

    async def ensure(self) -> None:
        """Create the group (and the stream) reading from the start, unless it exists."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """Entries never delivered to any consumer of the group (``>``), blocking a while."""
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return [entry for _stream, items in reply or [] for entry in _entries(items)]

    async def autoclaim(
        self, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[Entry], bool]:
        """Claim entries idle longer than ``min_idle_ms`` (a dead or stalled consumer's).

        Returns the next cursor, the claimed entries, and whether some claimed pending
        entries had been deleted from the stream (then call :meth:`ack_deleted`).
        """
        reply = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, start_id=cursor, count=count
        )
        deleted = any(not entry_id for entry_id, _fields in reply[1])
        return text(reply[0]), _entries(reply[1]), deleted

    async def ack_deleted(self, count: int = 1000) -> int:
        """Acknowledge this consumer's pending entries that no longer exist in the stream
        (someone trimmed or deleted them); there is nothing left to work on for them."""
        rows = await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=count, consumername=self.consumer
        )
        ids = [text(row["message_id"]) for row in rows]
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xrange(self.stream, entry_id, entry_id)
            found = await pipe.execute()
        gone = [entry_id for entry_id, rows_ in zip(ids, found, strict=True) if not rows_]
        if gone:
            await self.redis.xack(self.stream, self.group, *gone)
        return len(gone)

    async def touch(self, ids: Sequence[str]) -> set[str]:
        """Reset the idle time of the entries we still own, so no one claims them; which of
        ``ids`` we still own (the others were claimed by another consumer)."""
        if not ids:
            return set()
        owned = await self.scripts.call("touch", [self.stream], [self.group, self.consumer, *ids])
        return {text(entry_id) for entry_id in owned}

    async def forget_idle(self, idle_ms: int) -> list[str]:
        """Remove the other consumers idle for ``idle_ms`` that hold no pending entry (dead
        workers' names; a live one reading with BLOCK is never that idle). A stream or group
        Redis lost has no consumers."""
        try:
            consumers = await self.redis.xinfo_consumers(self.stream, self.group)
        except ResponseError as exc:
            if "no such key" in str(exc) or "NOGROUP" in str(exc):
                return []
            raise
        gone = []
        for info in consumers:
            name = text(info["name"])
            if name != self.consumer and int(info["pending"]) == 0 and int(info["idle"]) >= idle_ms:
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)
                gone.append(name)
        return gone

    def queue_ack(self, pipe: Any, entry_id: str) -> None:
        """Acknowledge and delete a done entry, on the caller's pipeline (acknowledging
        first: a crash in between leaves at worst a stray entry no one reads again)."""
        pipe.xack(self.stream, self.group, entry_id)
        pipe.xdel(self.stream, entry_id)


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int
    """Entries worked on at the same time."""
    read_block: float
    """Seconds one XREADGROUP blocks waiting for new entries."""
    claim_idle: float
    """Seconds a pending entry sits untouched before another consumer claims it."""
    claim_interval: float
    """Seconds between XAUTOCLAIM sweeps."""
    consumer_expiry: float = 0.0
    """Seconds another consumer of the group may sit idle, holding nothing, before a sweep
    removes its name (a dead worker's); 0 keeps every name."""


class StreamWorker:
    """Works the entries of ``group`` with ``handle``, ``concurrency`` at a time."""

    def __init__(
        self,
        group: ConsumerGroup,
        handle: Handler,
        settings: WorkerSettings,
        name: str,
        after_sweep: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``after_sweep`` runs after every claim sweep (e.g. to report the backlog)."""
        self.group = group
        self.settings = settings
        self.name = name
        """Names the tasks and the log lines."""
        self.stopping = asyncio.Event()
        """Set once :meth:`stop` began: a handler waiting to retry should give up."""
        self._handle = handle
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._slot_free = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._after_sweep = after_sweep
        self._next_sweep = 0.0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def start(self) -> None:
        await self.group.ensure()
        self._loops = [
            asyncio.create_task(self._read_loop(), name=f"{self.name}-read"),
            asyncio.create_task(self._claim_loop(), name=f"{self.name}-claim"),
            asyncio.create_task(self._touch_loop(), name=f"{self.name}-touch"),
        ]

    async def stop(self, grace: float) -> None:
        """Stop taking work; let entries in progress finish within ``grace`` seconds.

        Entries still running after that are cancelled: they stay pending and another
        consumer (or this one after a restart) claims them.
        """
        self.stopping.set()
        for task in self._loops:
            task.cancel()
        if self._loops:
            await asyncio.wait(self._loops, timeout=STOP_WAIT_S)
        self._loops.clear()
        running = list(self._inflight.values())
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- loops ---------------------------------------------------------------------------

    async def _free_slots(self) -> int:
        while len(self._inflight) >= self.settings.concurrency:
            self._slot_free.clear()
            await self._slot_free.wait()
        return self.settings.concurrency - len(self._inflight)

    async def step(self) -> int:
        """One round by hand, without the loops: a claim sweep when one is due, else one
        read; then every entry taken is worked to its end (and touched meanwhile). How many
        entries it took."""
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.settings.claim_interval
            await self._sweep()
        if not self._inflight:
            await self._read(self.settings.concurrency)
        taken = list(self._inflight.values())
        if not taken:
            return 0
        touching = asyncio.create_task(self._touch_loop(), name=f"{self.name}-touch")
        try:
            await asyncio.wait(taken)
        finally:
            touching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await touching
        return len(taken)

    async def _read(self, count: int) -> None:
        block_ms = max(1, int(self.settings.read_block * 1000))
        try:
            entries = await self.group.read(count, block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost the stream (a restart without data): create the group again.
            logger.warning("%s: consumer group missing; creating it again", self.name)
            await self.group.ensure()
            return
        for entry_id, fields in entries:
            self._spawn(entry_id, fields)

    async def _read_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                await self._read(await self._free_slots())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "%s: reading %s failed; retrying", self.name, self.group.stream, exc_info=True
                )
                await asyncio.sleep(1.0)

    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(self.settings.claim_interval)
            try:
                await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("%s: claiming stalled entries failed", self.name, exc_info=True)

    async def _sweep(self) -> None:
        """Claim what dead or stalled consumers left idle (as slots free up), forget the
        names of consumers long gone, then ``after_sweep``."""
        min_idle_ms = int(self.settings.claim_idle * 1000)
        cursor = "0-0"
        while True:
            free = await self._free_slots()
            try:
                cursor, entries, deleted = await self.group.autoclaim(min_idle_ms, cursor, free)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.group.ensure()  # Redis lost the stream: nothing to claim
                break
            if deleted:
                gone = await self.group.ack_deleted()
                logger.warning("acknowledged %d pending entries deleted by others", gone)
            for entry_id, fields in entries:
                if entry_id not in self._inflight:
                    logger.info("%s: claimed stalled entry %s", self.name, entry_id)
                    self._spawn(entry_id, fields)
            if cursor in ("0-0", "0"):
                break
        if self.settings.consumer_expiry > 0:
            gone_names = await self.group.forget_idle(int(self.settings.consumer_expiry * 1000))
            if gone_names:
                logger.info("%s: removed idle consumers %s", self.name, gone_names)
        if self._after_sweep is not None:
            await self._after_sweep()

    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.claim_idle / 3)
            ids = list(self._inflight)
            if not ids:
                continue
            try:
                owned = await self.group.touch(ids)
                for lost in set(ids) - owned:
                    task = self._inflight.get(lost)
                    if task is not None:
                        logger.warning("entry %s was claimed by another consumer; dropping", lost)
                        task.cancel()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("%s: touching in-flight entries failed", self.name, exc_info=True)

    # -- one entry -----------------------------------------------------------------------

    def _spawn(self, entry_id: str, fields: Fields | None) -> None:
        task = asyncio.create_task(self._run(entry_id, fields), name=f"{self.name}-job-{entry_id}")
        self._inflight[entry_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._inflight.get(entry_id) is task:
                del self._inflight[entry_id]
            self._slot_free.set()

        task.add_done_callback(done)

    async def _run(self, entry_id: str, fields: Fields | None) -> None:
        try:
            await self._handle(entry_id, fields)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Left pending: a claim sweep retries it after claim_idle.
            logger.exception(
                "%s: entry %s failed unexpectedly; it stays pending", self.name, entry_id
            )

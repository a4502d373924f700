"""Removing the pending-fanout records of finished fanouts without a round trip of their own.

A fanout's record (see :mod:`chat_svc.scripts`) is removed once every append of it
succeeded. Nothing waits for the removal: a record left a while longer is only claimable
``claim`` seconds after its channel step (5 s by default), and a record a claimer takes
anyway appends nothing new (appends are idempotent). So :class:`FinishedFanouts` keeps
the finished names and puts their removal at the front of the next pipeline the store
sends anyway (the sends or appends of a later tick); only when no pipeline goes within
``LINGER`` seconds do they go in one of their own. Under load, removals then cost no
round trip at all on one Redis; on a cluster they always go on their own, ``LINGER``
seconds' worth at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from chat_svc.keys import fanout_due_key, fanout_records_key
from feedchat_runtime.redis_client import RedisClient

logger = logging.getLogger(__name__)

LINGER = 0.1
"""Seconds finished names wait for a pipeline to ride on before they go by themselves."""


def queue_removals(pipe: Any, names: Mapping[int, Sequence[str]]) -> int:
    """Queue the removal of the records ``names`` (by bucket) on ``pipe``; how many
    commands. The record goes first: a claim that finds a due name without one drops the
    name."""
    queued = 0
    for b, members in names.items():
        if members:
            pipe.execute_command("HDEL", fanout_records_key(b), *members)
            pipe.execute_command("ZREM", fanout_due_key(b), *members)
            queued += 2
    return queued


class FinishedFanouts:
    """Names of finished fanouts waiting to be removed (see the module)."""

    def __init__(self, redis: RedisClient, linger: float = LINGER) -> None:
        self._redis = redis
        self._linger = linger
        self._names: dict[int, list[str]] = defaultdict(list)
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, names: Mapping[int, Sequence[str]]) -> None:
        """These fanouts finished: remove their records with the next pipeline."""
        for b, members in names.items():
            self._names[b].extend(members)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._alone)

    def queue(self, pipe: Any) -> int:
        """Put the waiting removals at the front of ``pipe`` (a pipeline about to be
        sent); how many commands (their replies come first: hand them to :meth:`taken`).

        Not on a cluster: there they may be for nodes the pipeline does not otherwise
        touch, and a node that fails makes redis-py's cluster pipeline fail as a whole;
        they go in a pipeline of their own after ``linger`` (still many at once)."""
        if isinstance(self._redis, RedisCluster):
            return 0
        return self._take(pipe)

    def _take(self, pipe: Any) -> int:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        names, self._names = self._names, defaultdict(list)
        return queue_removals(pipe, names)

    @staticmethod
    def taken(replies: list[Any], queued: int) -> list[Any]:
        """The replies after the first ``queued`` (those of the removals :meth:`queue`
        put in front); a removal that failed is logged (a claim finishes its record)."""
        for reply in replies[:queued]:
            if isinstance(reply, Exception):
                logger.warning("could not remove finished fanout records (a claim will): %s", reply)
                break
        return replies[queued:]

    def _alone(self) -> None:
        self._timer = None
        if any(self._names.values()):
            task = asyncio.get_running_loop().create_task(self.flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Remove the waiting records now and wait for removals already under way (a
        stopping server calls this before Redis closes: the timer would find it closed)."""
        await self.flush()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def flush(self) -> None:
        """Remove the waiting records now, in a pipeline of their own."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if queued := self._take(pipe):
                    self.taken(await pipe.execute(raise_on_error=False), queued)
        except Exception as exc:  # Redis unreachable: the records stay for a claim
            logger.warning("could not remove finished fanout records (a claim will): %s", exc)

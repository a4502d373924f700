"""Redis storage of presence: the only module that talks to Redis.

Keys (the three per-user keys share the hash tag ``{u:<id>}`` so one script touches them
atomically on Redis Cluster too):

- ``presence:{u:<id>}:conns``  ZSET  connection id -> heartbeat deadline (ms since epoch).
  One member per open device stream, on whichever instance holds it; an entry whose
  deadline has passed is a device that vanished silently.
- ``presence:{u:<id>}:dev``    HASH  connection id -> that device's status (online/away).
- ``presence:{u:<id>}:state``  HASH  st (online/away/offline), seen (ms of the latest
  heartbeat or clean disconnect), since (ms the status began), v (transition counter).
- ``presence:sweep:{<b>}``     ZSET  user id -> a deadline by which the user must be
  re-examined (bucket b = id mod 16, so the index spreads over slots).

Channel ``presence:events:<id>`` carries each transition of user <id> as
``"<id> <status> <seen_ms> <since_ms> <version>"``. Transitions are published from inside
the scripts that make them, so a transition and its event are one atomic step: whoever
flips a state publishes, and nobody else does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from feedchat_runtime.lua import LuaScripts
from feedchat_runtime.redis_client import RedisClient
from feedchat_runtime.replies import text
from presence_svc import scripts

SWEEP_BUCKETS = 16


def conns_key(user_id: int) -> str:
    return f"presence:{{u:{user_id}}}:conns"


def devices_key(user_id: int) -> str:
    return f"presence:{{u:{user_id}}}:dev"


def state_key(user_id: int) -> str:
    return f"presence:{{u:{user_id}}}:state"


def sweep_key(bucket: int) -> str:
    return f"presence:sweep:{{{bucket}}}"


def sweep_key_of(user_id: int) -> str:
    return sweep_key(user_id % SWEEP_BUCKETS)


CHANNEL_PREFIX = "presence:events:"


def channel(user_id: int) -> str:
    return f"{CHANNEL_PREFIX}{user_id}"


def user_of_channel(name: str) -> int:
    return int(name[len(CHANNEL_PREFIX) :])


def _user_keys(user_id: int) -> list[str]:
    return [conns_key(user_id), devices_key(user_id), state_key(user_id)]


@dataclass(frozen=True)
class StoredState:
    """A user's stored presence row (status is None: never seen)."""

    user_id: int
    status: str | None
    seen_ms: int | None
    since_ms: int | None
    version: int


@dataclass(frozen=True)
class Beat:
    """One heartbeat to write: a device of a user, its status ('' keeps it), deadline."""

    user_id: int
    conn_id: str
    status: str
    now_ms: int
    deadline_ms: int


@dataclass(frozen=True)
class Settled:
    """The answer of a script: whether it made a transition, the status, the version."""

    changed: bool
    status: str
    version: int
    latest_deadline_ms: int = 0

    @property
    def rejected(self) -> bool:
        """The heartbeat was refused: the user has too many devices already."""
        return self.status == ""


def parse_event(data: bytes) -> StoredState:
    """Decode a published transition."""
    uid, status, seen, since, version = data.split()
    return StoredState(int(uid), status.decode(), int(seen), int(since), int(version))


class PresenceStore:
    """Presence rows, device deadlines, the sweep index, and transition events in Redis."""

    def __init__(self, redis: RedisClient, max_devices: int) -> None:
        self.redis = redis
        self._max_devices = max_devices
        self.scripts = LuaScripts(redis, scripts.SOURCES)

    def _beat_args(self, beat: Beat) -> list[Any]:
        return [
            beat.conn_id,
            beat.status,
            beat.now_ms,
            beat.deadline_ms,
            self._max_devices,
            channel(beat.user_id),
            beat.user_id,
        ]

    async def heartbeat(self, beat: Beat) -> Settled:
        """Write one heartbeat now (a stream's opening uses this; others go in batches)."""
        await self.redis.zadd(
            sweep_key_of(beat.user_id), {str(beat.user_id): beat.deadline_ms}, gt=True
        )
        reply = await self.scripts.call("hb", _user_keys(beat.user_id), self._beat_args(beat))
        return Settled(int(reply[0]) == 1, text(reply[1]), int(reply[2]))

    async def heartbeats(self, beats: Sequence[Beat]) -> list[Settled]:
        """Write many heartbeats in one round trip (one pipeline, not a transaction).

        Each user's sweep-index entry is pushed out before its script runs: if this process
        dies in between, the index merely holds a user with nothing to sweep.
        """
        if not beats:
            return []

        def build(pipe: Any) -> None:
            for beat in beats:
                pipe.zadd(
                    sweep_key_of(beat.user_id), {str(beat.user_id): beat.deadline_ms}, gt=True
                )
                self.scripts.queue(pipe, "hb", _user_keys(beat.user_id), self._beat_args(beat))

        replies = await self.scripts.execute(build)
        return [Settled(int(r[0]) == 1, text(r[1]), int(r[2])) for r in replies[1::2]]

    async def disconnect(self, user_id: int, conn_id: str, now_ms: int) -> Settled:
        """Remove one device at once (its stream ended cleanly)."""
        reply = await self.scripts.call(
            "disc", _user_keys(user_id), [conn_id, now_ms, channel(user_id), user_id]
        )
        return Settled(int(reply[0]) == 1, text(reply[1]), int(reply[2]), int(float(reply[3])))

    async def due(self, bucket: int, now_ms: int, limit: int) -> list[int]:
        """Users of one sweep bucket whose index deadline is before ``now_ms``.

        Strictly before, like a device's expiry: a user the sweep re-indexes gets a
        deadline of at least ``now_ms`` and is not due again in the same round.
        """
        members = await self.redis.zrangebyscore(sweep_key(bucket), "-inf", f"({now_ms}", 0, limit)
        return [int(text(m)) for m in members]

    async def sweep(self, bucket: int, user_ids: Sequence[int], now_ms: int) -> list[Settled]:
        """Settle due users (idempotent), then re-index or drop them; one round trip each."""
        if not user_ids:
            return []

        def build(pipe: Any) -> None:
            for uid in user_ids:
                self.scripts.queue(pipe, "sweep", _user_keys(uid), [now_ms, channel(uid), uid])

        replies = await self.scripts.execute(build)
        results = [
            Settled(int(r[0]) == 1, text(r[1]), int(r[2]), int(float(r[3]))) for r in replies
        ]
        gone = [
            uid
            for uid, settled in zip(user_ids, results, strict=True)
            if not settled.latest_deadline_ms
        ]

        def reindex(pipe: Any) -> None:
            for uid, settled in zip(user_ids, results, strict=True):
                if settled.latest_deadline_ms:
                    pipe.zadd(sweep_key(bucket), {str(uid): settled.latest_deadline_ms}, gt=True)
            if gone:
                self.scripts.queue(pipe, "unidx", [sweep_key(bucket)], [now_ms, *gone])

        await self.scripts.execute(reindex)
        return results

    async def states(self, user_ids: Sequence[int]) -> list[StoredState]:
        """The stored rows of ``user_ids`` (in order; one round trip)."""
        if not user_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.hmget(state_key(uid), "st", "seen", "since", "v")
            rows = await pipe.execute()
        out = []
        for uid, (st, seen, since, v) in zip(user_ids, rows, strict=True):
            out.append(
                StoredState(
                    uid,
                    text(st) if st is not None else None,
                    int(seen) if seen is not None else None,
                    int(since) if since is not None else None,
                    int(v or 0),
                )
            )
        return out

    async def device_count(self, user_id: int) -> int:
        """Devices of a user with a live entry (for tests and operators)."""
        return int(await self.redis.zcard(conns_key(user_id)))

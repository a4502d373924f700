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

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from feedchat_runtime.redis_client import RedisClient

SWEEP_BUCKETS = 16

# Shared by disconnect and sweep. KEYS[1] conns ZSET, KEYS[2] dev HASH, KEYS[3] state HASH.
# settle(now, channel, uid, seen): drops devices whose deadline is before `now`, recomputes
# the user's status from what is left (none: offline; any device online: online; else
# away) and, when it differs from the stored one, records the transition (v + 1, since =
# now; seen = `seen` when given) and publishes it. Returns {changed 0/1, status, v,
# latest remaining deadline or 0}.
_SETTLE = """
local function settle(now, channel, uid, seen)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
    redis.call('HDEL', KEYS[2], unpack(expired))
  end
  local left = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local status = 'offline'
  local latest = '0'
  if #left > 0 then
    latest = left[2]
    status = 'away'
    for _, s in ipairs(redis.call('HVALS', KEYS[2])) do
      if s == 'online' then status = 'online' break end
    end
  end
  local cur = redis.call('HMGET', KEYS[3], 'st', 'v', 'seen')
  if cur[1] == false and status == 'offline' then
    return {0, status, 0, latest}          -- never seen: nothing to record
  end
  if seen ~= '' then redis.call('HSET', KEYS[3], 'seen', seen) else seen = cur[3] or now end
  if cur[1] == status then
    return {0, status, tonumber(cur[2] or 0), latest}
  end
  local v = redis.call('HINCRBY', KEYS[3], 'v', 1)
  redis.call('HSET', KEYS[3], 'st', status, 'since', now)
  redis.call('PUBLISH', channel, uid .. ' ' .. status .. ' ' .. seen .. ' ' .. now .. ' ' .. v)
  return {1, status, v, latest}
end
"""

# Heartbeat (and connect) of one device.
# KEYS[1] conns, KEYS[2] dev, KEYS[3] state.
# ARGV[1] connection id, ARGV[2] device status ('online', 'away', or '' to keep it),
# ARGV[3] now ms, ARGV[4] new deadline ms, ARGV[5] max devices per user, ARGV[6] event
# channel, ARGV[7] user id.
# Returns {changed 0/1 (-1: too many devices), status, version}. Most heartbeats change
# nothing but the deadline and `seen`, and publish nothing.
HEARTBEAT = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
  redis.call('HDEL', KEYS[2], unpack(expired))
end
local known = redis.call('HGET', KEYS[2], ARGV[1])
if known == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
  return {-1, '', 0}
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
local dev = ARGV[2]
if dev == '' then dev = known or 'online' end
local cur = redis.call('HMGET', KEYS[3], 'st', 'v')
redis.call('HSET', KEYS[3], 'seen', ARGV[3])
local status = cur[1]
if dev ~= known then redis.call('HSET', KEYS[2], ARGV[1], dev) end
if dev ~= known or #expired > 0 or status == false or status == 'offline' then
  status = 'away'
  for _, s in ipairs(redis.call('HVALS', KEYS[2])) do
    if s == 'online' then status = 'online' break end
  end
end
if cur[1] == status then return {0, status, tonumber(cur[2] or 0)} end
local v = redis.call('HINCRBY', KEYS[3], 'v', 1)
redis.call('HSET', KEYS[3], 'st', status, 'since', ARGV[3])
redis.call('PUBLISH', ARGV[6],
  ARGV[7] .. ' ' .. status .. ' ' .. ARGV[3] .. ' ' .. ARGV[3] .. ' ' .. v)
return {1, status, v}
"""

# Clean close of one device's stream.
# KEYS[1] conns, KEYS[2] dev, KEYS[3] state. ARGV[1] connection id, ARGV[2] now ms,
# ARGV[3] event channel, ARGV[4] user id. Returns settle()'s answer.
DISCONNECT = (
    _SETTLE
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return settle(ARGV[2], ARGV[3], ARGV[4], ARGV[2])
"""
)

# Sweep of one user whose index deadline passed: the compare-and-set that makes the sweep
# idempotent. Several instances may sweep the same user at once; Redis runs the scripts one
# after another, the first flips the state and publishes, the others find it settled.
# KEYS[1] conns, KEYS[2] dev, KEYS[3] state. ARGV[1] now ms, ARGV[2] event channel,
# ARGV[3] user id. Returns settle()'s answer.
SWEEP = (
    _SETTLE
    + """
return settle(ARGV[1], ARGV[2], ARGV[3], '')
"""
)

# Drop swept users from a sweep bucket unless a heartbeat moved their deadline past `now`
# in the meantime (a plain ZREM could lose a fresh device's only index entry).
# KEYS[1] sweep bucket. ARGV[1] now ms, ARGV[2..] user ids.
UNINDEX = """
local removed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""


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


def _queue_script(pipe: Any, sha: str, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queue EVALSHA on a pipeline of either topology. redis-py's cluster pipeline refuses
    its ``evalsha`` method, but routes the command itself by its keys like any other."""
    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PresenceStore:
    """Presence rows, device deadlines, the sweep index, and transition events in Redis."""

    def __init__(self, redis: RedisClient, max_devices: int) -> None:
        self.redis = redis
        self._max_devices = max_devices
        self._sources = {"hb": HEARTBEAT, "disc": DISCONNECT, "sweep": SWEEP, "unidx": UNINDEX}
        self._sha: dict[str, str] = {}
        self._load_lock = asyncio.Lock()

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script (again after a Redis restart lost them)."""
        async with self._load_lock:
            for name, source in self._sources.items():
                self._sha[name] = _as_str(await self.redis.script_load(source))

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if not self._sha:
            await self.load_scripts()
        try:
            return await self.redis.evalsha(self._sha[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.load_scripts()
            return await self.redis.evalsha(self._sha[name], len(keys), *keys, *args)

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
        reply = await self._eval("hb", _user_keys(beat.user_id), self._beat_args(beat))
        return Settled(int(reply[0]) == 1, _as_str(reply[1]), int(reply[2]))

    async def heartbeats(self, beats: Sequence[Beat]) -> list[Settled]:
        """Write many heartbeats in one round trip (one pipeline, not a transaction).

        Each user's sweep-index entry is pushed out before its script runs: if this process
        dies in between, the index merely holds a user with nothing to sweep.
        """
        if not beats:
            return []
        if not self._sha:
            await self.load_scripts()
        for attempt in (0, 1):
            async with self.redis.pipeline(transaction=False) as pipe:
                for beat in beats:
                    pipe.zadd(
                        sweep_key_of(beat.user_id), {str(beat.user_id): beat.deadline_ms}, gt=True
                    )
                    _queue_script(
                        pipe, self._sha["hb"], _user_keys(beat.user_id), self._beat_args(beat)
                    )
                replies = await pipe.execute(raise_on_error=attempt == 1)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                await self.load_scripts()
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return [Settled(int(r[0]) == 1, _as_str(r[1]), int(r[2])) for r in replies[1::2]]
        raise AssertionError("unreachable")

    async def disconnect(self, user_id: int, conn_id: str, now_ms: int) -> Settled:
        """Remove one device at once (its stream ended cleanly)."""
        reply = await self._eval(
            "disc", _user_keys(user_id), [conn_id, now_ms, channel(user_id), user_id]
        )
        return Settled(int(reply[0]) == 1, _as_str(reply[1]), int(reply[2]), int(float(reply[3])))

    async def due(self, bucket: int, now_ms: int, limit: int) -> list[int]:
        """Users of one sweep bucket whose index deadline is before ``now_ms``.

        Strictly before, like a device's expiry: a user the sweep re-indexes gets a
        deadline of at least ``now_ms`` and is not due again in the same round.
        """
        members = await self.redis.zrangebyscore(sweep_key(bucket), "-inf", f"({now_ms}", 0, limit)
        return [int(_as_str(m)) for m in members]

    async def sweep(self, bucket: int, user_ids: Sequence[int], now_ms: int) -> list[Settled]:
        """Settle due users (idempotent), then re-index or drop them; one round trip each."""
        if not user_ids:
            return []
        if not self._sha:
            await self.load_scripts()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for uid in user_ids:
                    _queue_script(
                        pipe, self._sha["sweep"], _user_keys(uid), [now_ms, channel(uid), uid]
                    )
                replies = await pipe.execute()
        except NoScriptError:
            await self.load_scripts()  # Redis lost its scripts; the next sweep retries
            return []
        results = [
            Settled(int(r[0]) == 1, _as_str(r[1]), int(r[2]), int(float(r[3]))) for r in replies
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            gone: list[int] = []
            for uid, settled in zip(user_ids, results, strict=True):
                if settled.latest_deadline_ms:
                    pipe.zadd(sweep_key(bucket), {str(uid): settled.latest_deadline_ms}, gt=True)
                else:
                    gone.append(uid)
            if gone:
                _queue_script(pipe, self._sha["unidx"], [sweep_key(bucket)], [now_ms, *gone])
            await pipe.execute()
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
                    _as_str(st) if st is not None else None,
                    int(seen) if seen is not None else None,
                    int(since) if since is not None else None,
                    int(v or 0),
                )
            )
        return out

    async def device_count(self, user_id: int) -> int:
        """Devices of a user with a live entry (for tests and operators)."""
        return int(await self.redis.zcard(conns_key(user_id)))

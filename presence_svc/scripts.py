"""The Lua scripts of presence_svc's store, each commented with its KEYS, ARGV and reply.

A user's three keys (conns ZSET, dev HASH, state HASH; see :mod:`presence_svc.store`)
share the user's hash tag, so every script touches one Redis Cluster slot and gets every
key through KEYS. Transitions are published from inside the scripts that make them.
"""

from __future__ import annotations

_SETTLE = """
-- Shared by disconnect and sweep. KEYS[1] conns ZSET, KEYS[2] dev HASH, KEYS[3] state HASH.
-- settle(now, channel, uid, seen): drops devices whose deadline is before `now`, recomputes
-- the user's status from what is left (none: offline; any device online: online; else
-- away) and, when it differs from the stored one, records the transition (v + 1, since =
-- now; seen = `seen` when given) and publishes it. Returns {changed 0/1, status, v,
-- latest remaining deadline or 0}.
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

HEARTBEAT = """
-- Heartbeat (and connect) of one device.
-- KEYS[1] conns, KEYS[2] dev, KEYS[3] state.
-- ARGV[1] connection id, ARGV[2] device status ('online', 'away', or '' to keep it),
-- ARGV[3] now ms, ARGV[4] new deadline ms, ARGV[5] max devices per user, ARGV[6] event
-- channel, ARGV[7] user id.
-- Returns {changed 0/1 (-1: too many devices), status, version}. Most heartbeats change
-- nothing but the deadline and `seen`, and publish nothing.
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

DISCONNECT = (
    _SETTLE
    + """
-- Clean close of one device's stream.
-- KEYS[1] conns, KEYS[2] dev, KEYS[3] state. ARGV[1] connection id, ARGV[2] now ms,
-- ARGV[3] event channel, ARGV[4] user id. Returns settle()'s answer.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return settle(ARGV[2], ARGV[3], ARGV[4], ARGV[2])
"""
)

SWEEP = (
    _SETTLE
    + """
-- Sweep of one user whose index deadline passed: the compare-and-set that makes the sweep
-- idempotent. Several instances may sweep the same user at once; Redis runs the scripts one
-- after another, the first flips the state and publishes, the others find it settled.
-- KEYS[1] conns, KEYS[2] dev, KEYS[3] state. ARGV[1] now ms, ARGV[2] event channel,
-- ARGV[3] user id. Returns settle()'s answer.
return settle(ARGV[1], ARGV[2], ARGV[3], '')
"""
)

UNINDEX = """
-- Drop swept users from a sweep bucket unless a heartbeat moved their deadline past `now`
-- in the meantime (a plain ZREM could lose a fresh device's only index entry).
-- KEYS[1] sweep bucket. ARGV[1] now ms, ARGV[2..] user ids.
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


SOURCES = {"hb": HEARTBEAT, "disc": DISCONNECT, "sweep": SWEEP, "unidx": UNINDEX}
"""The scripts the store runs, by name (:class:`feedchat_runtime.lua.LuaScripts`)."""

"""account_svc's Lua scripts; each gets every key through KEYS."""

from __future__ import annotations

HIT_LIMIT = """
-- KEYS[1] attempt counter. ARGV[1] limit, ARGV[2] window in ms.
-- Fixed window: counts one attempt unless the limit is reached. Returns
-- {1, ms left in window} when counted, {0, ms until the window frees} when refused.
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return {0, left}
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, redis.call('PTTL', KEYS[1])}
"""

REFUND_LIMIT = """
-- KEYS[1] attempt counter. Gives one attempt back (a login that succeeded or was never
-- tried); the window keeps its expiry.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
"""

FILL_CACHE = """
-- KEYS[1] cached user hash. ARGV[1] TTL in ms, then field, value, field, value, ...
-- Fills the cache entry whole with an expiry (a reader's fill after a miss).
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

SOURCES = {"hit_limit": HIT_LIMIT, "refund_limit": REFUND_LIMIT, "fill_cache": FILL_CACHE}
"""The scripts the stores run, by name (:class:`feedchat_runtime.lua.LuaScripts`)."""

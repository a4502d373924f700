"""Lua scripts of the chat store (run with EVALSHA through redis-py ``register_script``).

On one Redis (the default setup) each script is atomic. The send script is the exception
to "every key in KEYS": it reads the channel's members and derives each recipient's inbox
key (``chat:inbox:{u:<id>}``) itself, so the recipient set is the membership at the instant
of the write (no stale list from a separate read, and one round trip less). That makes it
a single-instance script: on Redis Cluster it would have to split into a channel-slot step
(seq, history, dedup) and per-recipient inbox appends; see docs/chat.md ("Scale-out").
"""

SEND = """
-- Store one message: dedup check, rate limit, membership check, per-channel sequence,
-- channel history, every recipient's inbox, and the dedup record, in one atomic step.
-- KEYS[1]  chat:dedup:{u:<sender>}:<client_msg_id>  hash (digest, message_id, seq, ...)
-- KEYS[2]  chat:rate:{u:<sender>}                   hash token bucket (tokens, ts)
-- KEYS[3]  chat:chan:{c:<channel>}:members          set of member ids
-- KEYS[4]  chat:chan:{c:<channel>}:seq              counter (dense per-channel seq)
-- KEYS[5]  chat:chan:{c:<channel>}:hist             stream, entry id "<seq>-0"
-- (derived) chat:inbox:{u:<member>}                stream per member (auto ids)
-- ARGV[1] sender id     ARGV[2] content digest   ARGV[3] message id (Snowflake)
-- ARGV[4] channel id    ARGV[5] text             ARGV[6] client_msg_id
-- ARGV[7] created ms    ARGV[8] inbox cap        ARGV[9] history cap
-- ARGV[10] dedup ttl s  ARGV[11] rate per s      ARGV[12] burst
-- Returns {"dup", message_id, seq, created_ms} | {"conflict"} | {"rate", wait_ms}
--       | {"not_member"} | {"ok", seq, user_1, prev_1, id_1, user_2, ...} (one per member)
local digest = redis.call('HGET', KEYS[1], 'digest')
if digest then
  if digest ~= ARGV[2] then return {'conflict'} end
  local r = redis.call('HMGET', KEYS[1], 'message_id', 'seq', 'created_ms')
  return {'dup', r[1], r[2], r[3]}
end
local now = tonumber(ARGV[7])
local rate = tonumber(ARGV[11])
local burst = tonumber(ARGV[12])
local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or burst
local ts = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
if tokens < 1 then
  return {'rate', tostring(math.ceil((1 - tokens) * 1000 / rate))}
end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then return {'not_member'} end
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'ts', ARGV[7])
redis.call('PEXPIRE', KEYS[2], math.ceil(burst * 1000 / rate) + 1000)
local seq = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[9], seq .. '-0',
  'message_id', ARGV[3], 'sender_id', ARGV[1], 'text', ARGV[5],
  'client_msg_id', ARGV[6], 'created_ms', ARGV[7])
local out = {'ok', tostring(seq)}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local inbox = 'chat:inbox:{u:' .. member .. '}'
  local last = redis.call('XREVRANGE', inbox, '+', '-', 'COUNT', 1)
  local prev = '0-0'
  if #last > 0 then prev = last[1][1] end
  local id = redis.call('XADD', inbox, 'MAXLEN', '~', ARGV[8], '*',
    'channel_id', ARGV[4], 'message_id', ARGV[3], 'seq', tostring(seq),
    'sender_id', ARGV[1], 'text', ARGV[5], 'client_msg_id', ARGV[6],
    'created_ms', ARGV[7])
  out[#out + 1] = member
  out[#out + 1] = prev
  out[#out + 1] = id
end
redis.call('HSET', KEYS[1], 'digest', ARGV[2], 'message_id', ARGV[3], 'seq', tostring(seq),
  'created_ms', ARGV[7], 'channel_id', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[10])
return out
"""

ADD_MEMBERS = """
-- Add users to a group within its member limit, atomically.
-- KEYS[1] chat:chan:{c:<channel>}:meta     hash (kind, name, owner_id, created_ms)
-- KEYS[2] chat:chan:{c:<channel>}:members  set of member ids
-- ARGV[1] member limit   ARGV[2..] user ids to add
-- Returns {"not_found"} | {"not_group"} | {"full", current_count} | {"ok", added_count}
local kind = redis.call('HGET', KEYS[1], 'kind')
if not kind then return {'not_found'} end
if kind ~= 'group' then return {'not_group'} end
local new = 0
for i = 2, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then new = new + 1 end
end
local count = redis.call('SCARD', KEYS[2])
if count + new > tonumber(ARGV[1]) then return {'full', tostring(count)} end
if #ARGV > 1 then redis.call('SADD', KEYS[2], unpack(ARGV, 2)) end
return {'ok', tostring(new)}
"""

SET_CURSOR = """
-- Move a device's acked inbox cursor forward only (never back).
-- KEYS[1] chat:cursor:{u:<user>}  hash device_id -> cursor "<ms>-<seq>"
-- ARGV[1] device id   ARGV[2] cursor ms   ARGV[3] cursor seq
-- Returns 1 when moved, 0 when the stored cursor was already at or past it.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ms, sq = string.match(old, '^(%d+)-(%d+)$')
  local oms, nms = tonumber(ms), tonumber(ARGV[2])
  if oms > nms or (oms == nms and tonumber(sq) >= tonumber(ARGV[3])) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '-' .. ARGV[3])
return 1
"""

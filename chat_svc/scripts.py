"""Lua scripts of the chat store (run with EVALSHA through redis-py ``register_script``).

On one Redis (the default setup) each script is atomic. The send script (``SEND_MANY``) is
the exception to "every key in KEYS": it reads the channel's members and derives each
recipient's inbox key (``chat:inbox:{u:<id>}``) itself, so the recipient set is the
membership at the instant of the write (no stale list from a separate read, and one round
trip less). That makes it a single-instance script: on Redis Cluster it would have to
split into a channel-slot step (seq, history, dedup) and per-recipient inbox appends;
see docs/chat.md ("Scale-out").
"""

SEND_KEYS = 7
"""Keys per message in SEND_MANY."""
SEND_ARGS = 14
"""Arguments per message in SEND_MANY."""

SEND_MANY = """
-- Store a batch of messages (group commit: sends that arrived together, one round trip).
-- Each message is handled exactly as if it were alone, in order: dedup check, rate limit,
-- membership check, per-channel sequence, channel history, every recipient's inbox, and
-- the dedup record. The batch is atomic on one Redis; a later message of the batch sees
-- the earlier ones (same client_msg_id twice -> the second is a duplicate).
-- All-or-nothing per message: every read and check (key types, the seq counter, the
-- history's newest id, each inbox's newest id) comes before the first write, so an error
-- leaves nothing behind (no seq, history entry, inbox entry, token or dedup record).
-- ARGV[1] n = number of messages; message i (0-based) uses
--   KEYS[7i+1 .. 7i+7] and ARGV[1+14i+1 .. 1+14i+14]:
-- KEYS[+1]  chat:dedup:{u:<sender>}:<client_msg_id>  hash (digest, message_id, seq, ...)
-- KEYS[+2]  chat:rate:{u:<sender>}                   hash token bucket (tokens, ts)
-- KEYS[+3]  chat:chan:{c:<channel>}:members          set of member ids
-- KEYS[+4]  chat:chan:{c:<channel>}:seq              counter (dense per-channel seq)
-- KEYS[+5]  chat:chan:{c:<channel>}:hist             stream, entry id "<seq>-0"
-- KEYS[+6]  chat:read:{u:<sender>}                   hash channel id -> seq read (the
--           sender has read its own message: its marker moves up to it, forward only)
-- KEYS[+7]  chat:chan:{c:<channel>}:stats:<day>      hash of the channel's message counts
--           on the UTC day of the message id's time: d (the day), h<hour>, m<minute of
--           day); counted here, with the seq, so each stored message counts exactly once
-- (derived) chat:inbox:{u:<member>}                  stream per member (auto ids)
-- ARGV[+1] sender id     ARGV[+2] content digest   ARGV[+3] message id (Snowflake)
-- ARGV[+4] channel id    ARGV[+5] text             ARGV[+6] client_msg_id
-- ARGV[+7] created ms    ARGV[+8] inbox cap        ARGV[+9] history cap
-- ARGV[+10] dedup ttl s  ARGV[+11] rate per s     ARGV[+12] burst
-- ARGV[+13] ms of the message id (its Snowflake time)   ARGV[+14] stats ttl s
-- Returns one reply per message, in order:
--   {"dup", message_id, seq, created_ms} | {"conflict"} | {"rate", wait_ms}
--   | {"not_member"} | {"ok", seq, user_1, prev_1, id_1, user_2, ...} (one per member)
--   | {"error", text} (a Redis error on that message, e.g. WRONGTYPE; others unaffected)
local function send_one(K, A)
  -- Phase 1: every read and every check. A key of the wrong type, a corrupt counter or a
  -- history ahead of the counter fails here, before anything is written, so a failed send
  -- leaves no trace and a retry with the same client_msg_id stores the message once.
  local digest = redis.call('HGET', K[1], 'digest')
  if digest then
    if digest ~= A[2] then return {'conflict'} end
    local r = redis.call('HMGET', K[1], 'message_id', 'seq', 'created_ms')
    return {'dup', r[1], r[2], r[3]}
  end
  local now = tonumber(A[7])
  local rate = tonumber(A[11])
  local burst = tonumber(A[12])
  local bucket = redis.call('HMGET', K[2], 'tokens', 'ts')
  local tokens = tonumber(bucket[1]) or burst
  local ts = tonumber(bucket[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < 1 then
    return {'rate', tostring(math.ceil((1 - tokens) * 1000 / rate))}
  end
  if redis.call('SISMEMBER', K[3], A[1]) == 0 then return {'not_member'} end
  local last = redis.call('GET', K[4])
  if last and not (string.match(last, '^%d+$') and #last <= 15) then
    error('chat seq counter ' .. K[4] .. ' is not an integer')
  end
  local seq = (tonumber(last) or 0) + 1
  local top = redis.call('XREVRANGE', K[5], '+', '-', 'COUNT', 1)
  if #top > 0 and tonumber(string.match(top[1][1], '^(%d+)-')) >= seq then
    error('chat history ' .. K[5] .. ' is ahead of its seq counter')
  end
  local read = tonumber(redis.call('HGET', K[6], A[4])) or 0
  local stats = redis.call('TYPE', K[7]).ok
  if stats ~= 'none' and stats ~= 'hash' then
    error('chat stats ' .. K[7] .. ' is not a hash')
  end
  local members = redis.call('SMEMBERS', K[3])
  local prevs = {}
  for i, member in ipairs(members) do
    local newest = redis.call('XREVRANGE', 'chat:inbox:{u:' .. member .. '}', '+', '-',
      'COUNT', 1)
    prevs[i] = '0-0'
    if #newest > 0 then prevs[i] = newest[1][1] end
  end
  -- Phase 2: the writes; with the checks above none of them can fail part-way.
  redis.call('HSET', K[2], 'tokens', tostring(tokens - 1), 'ts', A[7])
  redis.call('PEXPIRE', K[2], math.ceil(burst * 1000 / rate) + 1000)
  seq = redis.call('INCR', K[4])
  redis.call('XADD', K[5], 'MAXLEN', '~', A[9], seq .. '-0',
    'message_id', A[3], 'sender_id', A[1], 'text', A[5],
    'client_msg_id', A[6], 'created_ms', A[7])
  local out = {'ok', tostring(seq)}
  for i, member in ipairs(members) do
    local id = redis.call('XADD', 'chat:inbox:{u:' .. member .. '}', 'MAXLEN', '~', A[8], '*',
      'channel_id', A[4], 'message_id', A[3], 'seq', tostring(seq),
      'sender_id', A[1], 'text', A[5], 'client_msg_id', A[6],
      'created_ms', A[7])
    out[#out + 1] = member
    out[#out + 1] = prevs[i]
    out[#out + 1] = id
  end
  if seq > read then redis.call('HSET', K[6], A[4], tostring(seq)) end
  local of_day = tonumber(A[13]) % 86400000
  redis.call('HINCRBY', K[7], 'd', 1)
  redis.call('HINCRBY', K[7], 'h' .. math.floor(of_day / 3600000), 1)
  redis.call('HINCRBY', K[7], 'm' .. math.floor(of_day / 60000), 1)
  redis.call('EXPIRE', K[7], A[14])
  redis.call('HSET', K[1], 'digest', A[2], 'message_id', A[3], 'seq', tostring(seq),
    'created_ms', A[7], 'channel_id', A[4])
  redis.call('EXPIRE', K[1], A[10])
  return out
end

local replies = {}
for i = 0, tonumber(ARGV[1]) - 1 do
  local K = {}
  for j = 1, 7 do K[j] = KEYS[7 * i + j] end
  local A = {}
  for j = 1, 14 do A[j] = ARGV[1 + 14 * i + j] end
  local ok, reply = pcall(send_one, K, A)
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    reply = {'error', tostring(reply)}
  end
  replies[#replies + 1] = reply
end
return replies
"""

CACHE_MEMBERS = """
-- Add users to a channel's cached member set (a copy of PostgreSQL's), conditionally:
-- ARGV[1] = 1 adds only to a cached set (keeping it in step; adding to a missing set would
-- make a partial one), ARGV[1] = 0 fills only a missing set (never over a cached one,
-- which writers keep in step).
-- KEYS[1] chat:chan:{c:<channel>}:members  set of member ids
-- ARGV[1] 1 or 0 (see above)   ARGV[2..] user ids
-- Returns 1 when added, 0 when not.
if redis.call('EXISTS', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
return 1
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

SET_READ = """
-- Move a user's read marker of one channel forward only, never past the channel's end.
-- KEYS[1] chat:read:{u:<user>}  hash channel id -> highest seq read
-- ARGV[1] channel id   ARGV[2] seq read   ARGV[3] the channel's last seq (read just before;
--   it only grows, so clamping to it is safe)
-- Returns {moved (1/0), marker after the call}.
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
local new = math.min(tonumber(ARGV[2]), tonumber(ARGV[3]))
if new <= old then return {0, tostring(old)} end
redis.call('HSET', KEYS[1], ARGV[1], tostring(new))
return {1, tostring(new)}
"""

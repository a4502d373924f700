"""Lua scripts of the chat store (run with EVALSHA; see :class:`chat_svc.store.ChatStore`).

Every script touches one hash slot and gets every key through KEYS (the key families are
in :mod:`chat_svc.keys`), so each runs unchanged on one Redis and on a Redis Cluster.
A send is two steps:

1. ``SEND_MANY``, in the channel's bucket slot: dedup, rate limit, membership, seq,
   history, and a pending-fanout record naming the message's recipients. This is the
   commit point: the sender is acked after it.
2. ``APPEND``, once per recipient in the recipient's slot: the inbox entry, a no-op when
   that inbox already has the message. Then the pending-fanout record is removed; a
   record left behind (the chat server died, or an append failed) is taken over by
   ``FANOUT_CLAIM`` on any chat server, which does step 2 again.
"""

SEND_KEYS = 8
"""Keys per message in SEND_MANY."""
SEND_ARGS = 13
"""Arguments per message in SEND_MANY."""

SEND_MANY = """
-- The channel step of a batch of sends (group commit: sends that arrived together, one
-- round trip), all in one channel bucket's slot. Each message is handled exactly as if it
-- were alone, in order: dedup check, rate limit, membership check, per-channel sequence,
-- channel history, the pending-fanout record (the recipients: the members at this
-- instant), and the dedup record. A later message of the batch sees the earlier ones
-- (same client_msg_id twice -> the second is a duplicate).
-- All-or-nothing per message: every read and check (key types, the seq counter, the
-- history's newest id) comes before the first write, so an error leaves nothing behind
-- (no seq, history entry, pending record, rate token or dedup record).
-- ARGV[1] n = number of messages; ARGV[2] claim delay ms (a pending record becomes
-- claimable by any chat server this long after now, by the Redis clock);
-- message i (0-based) uses KEYS[8i+1 .. 8i+8] and ARGV[2+13i+1 .. 2+13i+13]:
-- KEYS[+1]  chat:chan:{cb:<b>}:<channel>:dedup:<sender>:<cmid>  hash (digest, ids)
-- KEYS[+2]  chat:chan:{cb:<b>}:<channel>:rate:<sender>          hash token bucket
-- KEYS[+3]  chat:chan:{cb:<b>}:<channel>:members                set of member ids
-- KEYS[+4]  chat:chan:{cb:<b>}:<channel>:seq                    counter (dense seq)
-- KEYS[+5]  chat:chan:{cb:<b>}:<channel>:hist                   stream, id "<seq>-0"
-- KEYS[+6]  chat:fanout:{cb:<b>}:due                            zset record -> claim ms
-- KEYS[+7]  chat:fanout:{cb:<b>}:rec                            hash record -> recipients
-- KEYS[+8]  chat:chan:{cb:<b>}:<channel>:stats:<day>            hash of the channel's
--           message counts on the UTC day of the message id's time: d (the day),
--           h<hour>, m<minute of day); counted here, with the seq, so each stored
--           message counts exactly once
-- ARGV[+1] sender id     ARGV[+2] content digest   ARGV[+3] message id (Snowflake)
-- ARGV[+4] channel id    ARGV[+5] text             ARGV[+6] client_msg_id
-- ARGV[+7] created ms    ARGV[+8] history cap      ARGV[+9] dedup ttl s
-- ARGV[+10] rate per s   ARGV[+11] burst
-- ARGV[+12] ms of the message id (its Snowflake time)   ARGV[+13] stats ttl s
-- The pending record is named "<channel>:<seq>"; its value is the recipient ids,
-- space-separated.
-- Returns one reply per message, in order:
--   {"dup", message_id, seq, created_ms, member_1, ...} (the recipients while its
--   fanout is pending, else none) | {"conflict"} | {"rate", wait_ms}
--   | {"not_member"} | {"ok", seq, member_1, member_2, ...} (the recipients)
--   | {"error", text} (a Redis error on that message, e.g. WRONGTYPE; others unaffected)
local clock = redis.call('TIME')
local due = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  + tonumber(ARGV[2])

local function send_one(K, A)
  -- Phase 1: every read and every check. A key of the wrong type, a corrupt counter or a
  -- history ahead of the counter fails here, before anything is written, so a failed send
  -- leaves no trace and a retry with the same client_msg_id stores the message once.
  local digest = redis.call('HGET', K[1], 'digest')
  if digest then
    if digest ~= A[2] then return {'conflict'} end
    local r = redis.call('HMGET', K[1], 'message_id', 'seq', 'created_ms')
    local out = {'dup', r[1], r[2], r[3]}
    -- its fanout still pending (e.g. the first try was refused REPLICA_ACK_TIMEOUT): the
    -- recipients, so the retry finishes it now instead of waiting for a claim
    local pending = redis.call('HGET', K[7], A[4] .. ':' .. r[2])
    if pending then
      for member in string.gmatch(pending, '%d+') do out[#out + 1] = member end
    end
    return out
  end
  local now = tonumber(A[7])
  local rate = tonumber(A[10])
  local burst = tonumber(A[11])
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
  local name = A[4] .. ':' .. tostring(seq)
  redis.call('ZSCORE', K[6], name)  -- type checks of the pending-record keys
  redis.call('HEXISTS', K[7], name)
  local stats = redis.call('TYPE', K[8]).ok
  if stats ~= 'none' and stats ~= 'hash' then
    error('chat stats ' .. K[8] .. ' is not a hash')
  end
  local members = redis.call('SMEMBERS', K[3])
  -- Phase 2: the writes; with the checks above none of them can fail part-way.
  redis.call('HSET', K[2], 'tokens', tostring(tokens - 1), 'ts', A[7])
  redis.call('PEXPIRE', K[2], math.ceil(burst * 1000 / rate) + 1000)
  seq = redis.call('INCR', K[4])
  redis.call('XADD', K[5], 'MAXLEN', '~', A[8], seq .. '-0',
    'message_id', A[3], 'sender_id', A[1], 'text', A[5],
    'client_msg_id', A[6], 'created_ms', A[7])
  redis.call('HSET', K[7], name, table.concat(members, ' '))
  redis.call('ZADD', K[6], due, name)
  local of_day = tonumber(A[12]) % 86400000
  redis.call('HINCRBY', K[8], 'd', 1)
  redis.call('HINCRBY', K[8], 'h' .. math.floor(of_day / 3600000), 1)
  redis.call('HINCRBY', K[8], 'm' .. math.floor(of_day / 60000), 1)
  redis.call('EXPIRE', K[8], A[13])
  redis.call('HSET', K[1], 'digest', A[2], 'message_id', A[3], 'seq', tostring(seq),
    'created_ms', A[7], 'channel_id', A[4])
  redis.call('EXPIRE', K[1], A[9])
  local out = {'ok', tostring(seq)}
  for _, member in ipairs(members) do out[#out + 1] = member end
  return out
end

local replies = {}
for i = 0, tonumber(ARGV[1]) - 1 do
  local K = {}
  for j = 1, 8 do K[j] = KEYS[8 * i + j] end
  local A = {}
  for j = 1, 13 do A[j] = ARGV[2 + 13 * i + j] end
  local ok, reply = pcall(send_one, K, A)
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    reply = {'error', tostring(reply)}
  end
  replies[#replies + 1] = reply
end
return replies
"""

APPEND = """
-- Append one message to one recipient's inbox, once: a message id the inbox already has
-- (a retried or claimed fanout) is not appended again.
-- KEYS[1] chat:inbox:{u:<user>}      stream: the inbox (auto ids)
-- KEYS[2] chat:inbox:{u:<user>}:ids  zset message id -> the ms part of its inbox entry id
--         (the newest ARGV[9] ids are kept: a retry is recognised while fewer than that
--         many messages reached the inbox since the first append)
-- KEYS[3] chat:read:{u:<user>}       hash channel id -> seq read (moved up to the message
--         when the recipient is its sender: your own messages are read)
-- ARGV[1] channel id   ARGV[2] message id   ARGV[3] seq   ARGV[4] sender id
-- ARGV[5] text         ARGV[6] client_msg_id              ARGV[7] created ms
-- ARGV[8] inbox cap    ARGV[9] ids kept     ARGV[10] 1 when the recipient is the sender
-- Returns {"ok", previous entry id or "0-0", entry id}, {"dup", previous, entry id} for an
-- entry already there, or {"gone"} (already appended, and trimmed from the inbox since).
-- Every read and check comes before the first write (all or nothing).
local found = redis.call('ZSCORE', KEYS[2], ARGV[2])
if found then
  local ms = string.format('%d', tonumber(found))
  for _, row in ipairs(redis.call('XRANGE', KEYS[1], ms .. '-0', ms .. '-18446744073709551615')) do
    local f = row[2]
    for i = 1, #f, 2 do
      if f[i] == 'message_id' and f[i + 1] == ARGV[2] then
        local before = redis.call('XREVRANGE', KEYS[1], '(' .. row[1], '-', 'COUNT', 1)
        local prev = '0-0'
        if #before > 0 then prev = before[1][1] end
        return {'dup', prev, row[1]}
      end
    end
  end
  return {'gone'}
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #newest > 0 then prev = newest[1][1] end
local read = tonumber(redis.call('HGET', KEYS[3], ARGV[1])) or 0
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[8], '*',
  'channel_id', ARGV[1], 'message_id', ARGV[2], 'seq', ARGV[3],
  'sender_id', ARGV[4], 'text', ARGV[5], 'client_msg_id', ARGV[6],
  'created_ms', ARGV[7])
redis.call('ZADD', KEYS[2], string.match(id, '^(%d+)-'), ARGV[2])
local kept = tonumber(ARGV[9])
if redis.call('ZCARD', KEYS[2]) > kept then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(kept + 1))
end
if ARGV[10] == '1' and tonumber(ARGV[3]) > read then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
return {'ok', prev, id}
"""

FANOUT_CLAIM = """
-- Take over the pending-fanout records of one channel bucket that are due: each taken
-- record's claim time moves ARGV[1] ms ahead (so it is taken again if this claimer dies
-- too) and it is returned; a due name without a record (its fanout finished between
-- the two removals) is dropped.
-- KEYS[1] chat:fanout:{cb:<b>}:due  zset record -> claim ms (Redis clock)
-- KEYS[2] chat:fanout:{cb:<b>}:rec  hash record -> recipient ids
-- ARGV[1] claim delay ms   ARGV[2] most records to take
-- Returns {name_1, recipients_1, name_2, ...}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])) do
  local recipients = redis.call('HGET', KEYS[2], name)
  if recipients then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), name)
    out[#out + 1] = name
    out[#out + 1] = recipients
  else
    redis.call('ZREM', KEYS[1], name)
  end
end
return out
"""

CACHE_MEMBERS = """
-- Add users to a channel's cached member set (a copy of PostgreSQL's), conditionally:
-- ARGV[1] = 1 adds only to a cached set (keeping it in step; adding to a missing set would
-- make a partial one), ARGV[1] = 0 fills only a missing set (never over a cached one,
-- which writers keep in step).
-- KEYS[1] chat:chan:{cb:<b>}:<channel>:members  set of member ids
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

"""Lua scripts of the chat store (run with EVALSHA; see :class:`chat_svc.store.ChatStore`).

Every script gets every key through KEYS (the key families are in :mod:`chat_svc.keys`)
and one call takes the keys of one hash slot on a Redis Cluster (on one Redis a call of
the ``_MANY`` scripts may take keys of many slots: the store groups the calls with
:func:`feedchat_runtime.redis_client.slot_groups`), so each runs unchanged on both.
A send (a message, or a channel event: an edit, a delete, a reaction) is two steps:

1. ``SEND_MANY``, in the channel's bucket slot: dedup, rate limit, membership, the
   event's checks and its change to the target's state, seq, history, and a
   pending-fanout record naming the recipients. This is the commit point: the sender is
   acked after it.
2. ``APPEND_MANY``, one call per hash slot of the recipients' inboxes (per node on one
   Redis): each inbox entry, a no-op when that inbox already has the message (a delete
   also removes the deleted text there).
   Then the pending-fanout record is removed; a record left behind (the chat server
   died, or an append failed) is taken over by ``FANOUT_CLAIM`` on any chat server,
   which does step 2 again.
"""

SEND_KEYS = 10
"""Keys per message in SEND_MANY."""
SEND_ARGS = 22
"""Arguments per message in SEND_MANY."""

SEND_MANY = """
-- The channel step of a batch of sends (group commit: sends that arrived together, one
-- round trip), all in one channel bucket's slot. A "send" is a message or a channel event
-- on an earlier message (an edit, a delete, a reaction added or removed): each gets the
-- channel's next seq and a history entry, and is fanned out like any message. Each is
-- handled exactly as if it were alone, in order: dedup check, rate limit, membership
-- check, the event's own checks (its target exists, the sender may act on it, ...),
-- per-channel sequence, channel history, the pending-fanout record (the recipients: the
-- members at this instant), and the dedup record. A later send of the batch sees the
-- earlier ones (same client_msg_id twice -> the second is a duplicate).
-- All-or-nothing per send: every read and check (key types, the seq counter, the
-- history's newest id, the target's state) comes before the first write, so an error
-- leaves nothing behind (no seq, history entry, pending record, rate token or dedup record).
-- ARGV[1] n = number of sends; ARGV[2] claim delay ms (a pending record becomes
-- claimable by any chat server this long after now, by the Redis clock);
-- send i (0-based) uses KEYS[10i+1 .. 10i+10] and ARGV[2+22i+1 .. 2+22i+22]:
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
--           message counts exactly once (events are not counted)
-- KEYS[+9]  chat:chan:{cb:<b>}:<channel>:ids                    zset message id -> seq
--           of the channel's messages (not events): how a target is found; the newest
--           ARGV[+21] are kept (trimmed 64 at a time, with their states)
-- KEYS[+10] chat:chan:{cb:<b>}:<channel>:state                  hash: per message with
--           events, "m:<seq>" -> JSON {e: edited ms, t: current text, x: [[edit seq,
--           edit message id], ...], r: [[emoji, count], ...], u: [reacting user ids],
--           d: deleted ms (a tombstone, with i, s, c, rt, rs: the deleted message's id,
--           sender, created ms, reply_to, reply seq; no text, no client_msg_id)};
--           "u:<seq>:<user>" -> JSON [the user's emoji on that message]
-- ARGV[+1] sender id     ARGV[+2] content digest   ARGV[+3] message id (Snowflake)
-- ARGV[+4] channel id    ARGV[+5] text (an edit: the new text; "" for other events)
-- ARGV[+6] client_msg_id ARGV[+7] created ms       ARGV[+8] history cap
-- ARGV[+9] dedup ttl s   ARGV[+10] rate per s      ARGV[+11] burst
-- ARGV[+12] ms of the message id (its Snowflake time)   ARGV[+13] stats ttl s
-- ARGV[+14] kind: "" (a message), "edit", "delete", "react", "unreact"
-- ARGV[+15] target message id (an event's target; a message's reply_to); "0": none
-- ARGV[+16] emoji (reactions)   ARGV[+17] edit window ms
-- ARGV[+18] "1": the sender may delete others' messages (the group's owner)
-- ARGV[+19] most distinct reactions per message   ARGV[+20] most per user per message
-- ARGV[+21] message ids kept in KEYS[+9]   ARGV[+22] most edits per message
-- The pending record is named "<channel>:<seq>"; its value is the recipient ids,
-- space-separated.
-- Returns one reply per send, in order:
--   {"dup", message_id, seq, created_ms, target seq, scrub, member_1, ...} (the
--   recipients while its fanout is pending, else none) | {"conflict"} | {"rate", wait_ms}
--   | {"not_member"} | {"ok", seq, target seq, scrub, member_1, member_2, ...} (the
--   recipients) | {"error", text} (a Redis error on that send; others unaffected)
--   | an event's refusal: {"not_found"} (no such message: unknown, an event, trimmed),
--   {"deleted"}, {"not_sender"}, {"window"}, {"reacted"}, {"no_reaction"},
--   {"reaction_limit"}, {"user_limit"}, {"edit_limit"}; a reply's: {"reply_not_found"}.
-- "target seq": the seq of an event's target or of the message replied to ("0": none);
-- "scrub": a delete's message ids to remove from the inboxes (the deleted message and
-- its edits), space-separated ("" otherwise).
local clock = redis.call('TIME')
local due = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  + tonumber(ARGV[2])

local function state(K, field)
  local raw = redis.call('HGET', K[10], field)
  if not raw then return {} end
  return cjson.decode(raw)
end

local function int(value)
  return string.format('%d', tonumber(value))
end

local function entry(hist, seq)
  local rows = redis.call('XRANGE', hist, seq .. '-0', seq .. '-0')
  if #rows == 0 then return nil end
  local out = {}
  for i = 1, #rows[1][2], 2 do out[rows[1][2][i]] = rows[1][2][i + 1] end
  return out
end

local function index_of(list, value)
  for i, item in ipairs(list) do
    if item == value or (type(item) == 'table' and item[1] == value) then return i end
  end
  return nil
end

-- An event's checks (phase 1): a refusal reply, or nil and what its writes need.
local function check_event(K, A)
  local kind = A[14]
  local tseq = redis.call('ZSCORE', K[9], A[15])
  if not tseq then return {'not_found'} end
  tseq = int(tseq)
  local st = state(K, 'm:' .. tseq)
  if st.d then return {'deleted'} end
  local target = entry(K[5], tseq)
  if not target then return {'not_found'} end
  local ev = {tseq = tseq, st = st, target = target}
  if kind == 'edit' then
    if target.sender_id ~= A[1] then return {'not_sender'} end
    if tonumber(A[7]) - tonumber(target.created_ms) > tonumber(A[17]) then
      return {'window'}
    end
    if #(st.x or {}) >= tonumber(A[22]) then return {'edit_limit'} end
  elseif kind == 'delete' then
    if target.sender_id ~= A[1] and A[18] ~= '1' then return {'not_sender'} end
  else
    ev.ukey = 'u:' .. tseq .. ':' .. A[1]
    ev.mine = state(K, ev.ukey)
    local has = index_of(ev.mine, A[16])
    if kind == 'react' then
      if has then return {'reacted'} end
      if #ev.mine >= tonumber(A[20]) then return {'user_limit'} end
      if not index_of(st.r or {}, A[16]) and #(st.r or {}) >= tonumber(A[19]) then
        return {'reaction_limit'}
      end
    elseif not has then
      return {'no_reaction'}
    end
  end
  return nil, ev
end

-- An event's writes to its target's state (and, for a delete, the history): the
-- history fields of the event, and its scrub list.
local function apply_event(K, A, seq, ev)
  local kind, tseq, st = A[14], ev.tseq, ev.st
  local fields = {'kind', kind, 'target', A[15], 'target_seq', tseq}
  local scrub = ''
  if kind == 'edit' then
    st.e, st.t = tonumber(A[7]), A[5]
    st.x = st.x or {}
    st.x[#st.x + 1] = {tostring(seq), A[3]}
  elseif kind == 'delete' then
    local t = ev.target
    local ids = {t.message_id}
    -- the deleted message's and its edits' fanouts still pending are dropped: a claim or
    -- a retried send must not put their text into an inbox after the delete
    local pending = {A[4] .. ':' .. tseq}
    for _, edit in ipairs(st.x or {}) do
      redis.call('XDEL', K[5], edit[1] .. '-0')
      ids[#ids + 1] = edit[2]
      pending[#pending + 1] = A[4] .. ':' .. edit[1]
    end
    redis.call('XDEL', K[5], tseq .. '-0')
    redis.call('HDEL', K[7], unpack(pending))
    redis.call('ZREM', K[6], unpack(pending))
    for _, uid in ipairs(st.u or {}) do
      redis.call('HDEL', K[10], 'u:' .. tseq .. ':' .. uid)
    end
    st = {d = tonumber(A[7]), i = t.message_id, s = t.sender_id, c = t.created_ms,
      rt = t.reply_to or '0', rs = t.reply_seq or '0'}
    scrub = table.concat(ids, ' ')
    fields[#fields + 1] = 'scrub'
    fields[#fields + 1] = scrub
  else
    local counts, users, mine = st.r or {}, st.u or {}, ev.mine
    local at = index_of(counts, A[16])
    if kind == 'react' then
      if at then counts[at][2] = counts[at][2] + 1 else counts[#counts + 1] = {A[16], 1} end
      mine[#mine + 1] = A[16]
      if not index_of(users, A[1]) then users[#users + 1] = A[1] end
    else
      counts[at][2] = counts[at][2] - 1
      if counts[at][2] <= 0 then table.remove(counts, at) end
      table.remove(mine, index_of(mine, A[16]))
      if #mine == 0 then table.remove(users, index_of(users, A[1])) end
    end
    if #mine > 0 then
      redis.call('HSET', K[10], ev.ukey, cjson.encode(mine))
    else
      redis.call('HDEL', K[10], ev.ukey)
    end
    st.r, st.u = counts, users
    fields[#fields + 1] = 'emoji'
    fields[#fields + 1] = A[16]
  end
  redis.call('HSET', K[10], 'm:' .. tseq, cjson.encode(st))
  return fields, scrub
end

-- Forget the oldest 64 message ids (and their states) once the index holds 64 more
-- than it keeps.
local function trim_ids(K, kept)
  local old = redis.call('ZRANGE', K[9], 0, 63, 'WITHSCORES')
  for i = 2, #old, 2 do
    local seq = int(old[i])
    local raw = redis.call('HGET', K[10], 'm:' .. seq)
    if raw then
      for _, uid in ipairs(cjson.decode(raw).u or {}) do
        redis.call('HDEL', K[10], 'u:' .. seq .. ':' .. uid)
      end
      redis.call('HDEL', K[10], 'm:' .. seq)
    end
  end
  redis.call('ZREMRANGEBYRANK', K[9], 0, 63)
end

local function send_one(K, A)
  -- Phase 1: every read and every check. A key of the wrong type, a corrupt counter or a
  -- history ahead of the counter fails here, before anything is written, so a failed send
  -- leaves no trace and a retry with the same client_msg_id stores the message once.
  local digest = redis.call('HGET', K[1], 'digest')
  if digest then
    if digest ~= A[2] then return {'conflict'} end
    local r = redis.call('HMGET', K[1], 'message_id', 'seq', 'created_ms', 'tseq', 'scrub')
    local out = {'dup', r[1], r[2], r[3], r[4] or '0', r[5] or ''}
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
  local kind = A[14]
  local ev, tseq = nil, '0'
  local ids = redis.call('ZCARD', K[9])
  local trim = kind == '' and ids + 1 > tonumber(A[21]) + 64
  if kind ~= '' then
    local refused
    refused, ev = check_event(K, A)
    if refused then return refused end
    tseq = ev.tseq
  elseif A[15] ~= '0' then
    local replied = redis.call('ZSCORE', K[9], A[15])
    if not replied then return {'reply_not_found'} end
    tseq = int(replied)
  end
  if trim then redis.call('HLEN', K[10]) end  -- type check before the writes
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
  local fields = {}
  local scrub = ''
  if ev then
    fields, scrub = apply_event(K, A, seq, ev)
  elseif tseq ~= '0' then
    fields = {'reply_to', A[15], 'reply_seq', tseq}
  end
  redis.call('XADD', K[5], 'MAXLEN', '~', A[8], seq .. '-0',
    'message_id', A[3], 'sender_id', A[1], 'text', A[5],
    'client_msg_id', A[6], 'created_ms', A[7], unpack(fields))
  redis.call('HSET', K[7], name, table.concat(members, ' '))
  redis.call('ZADD', K[6], due, name)
  if kind == '' then
    redis.call('ZADD', K[9], seq, A[3])
    if trim then trim_ids(K) end
    local of_day = tonumber(A[12]) % 86400000
    redis.call('HINCRBY', K[8], 'd', 1)
    redis.call('HINCRBY', K[8], 'h' .. math.floor(of_day / 3600000), 1)
    redis.call('HINCRBY', K[8], 'm' .. math.floor(of_day / 60000), 1)
    redis.call('EXPIRE', K[8], A[13])
  end
  redis.call('HSET', K[1], 'digest', A[2], 'message_id', A[3], 'seq', tostring(seq),
    'created_ms', A[7], 'channel_id', A[4], 'tseq', tseq, 'scrub', scrub)
  redis.call('EXPIRE', K[1], A[9])
  local out = {'ok', tostring(seq), tseq, scrub}
  for _, member in ipairs(members) do out[#out + 1] = member end
  return out
end

local replies = {}
for i = 0, tonumber(ARGV[1]) - 1 do
  local K = {}
  for j = 1, 10 do K[j] = KEYS[10 * i + j] end
  local A = {}
  for j = 1, 22 do A[j] = ARGV[2 + 22 * i + j] end
  local ok, reply = pcall(send_one, K, A)
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    reply = {'error', tostring(reply)}
  end
  replies[#replies + 1] = reply
end
return replies
"""

APPEND_KEYS = 3
"""Keys per inbox in APPEND_MANY."""

APPEND_MANY = """
-- Append messages (or channel events) to recipients' inboxes, each once: a message id an
-- inbox already has (a retried or claimed fanout) is not appended again. A delete also
-- removes the deleted message's entries (and its edits') from the inbox: no deleted text
-- stays in it. One call takes the appends of one hash slot (on a cluster) or of the whole
-- node (one Redis): many inboxes, many messages; each append is handled exactly as if it
-- were alone, and an error fails just that append (every read and check of an append
-- comes before its first write, so it leaves nothing behind).
-- ARGV[1] inbox cap   ARGV[2] message ids kept per inbox   ARGV[3] m = number of messages
-- then m message blocks, each: n (the block's length after it), then
--   channel id, message id, seq, sender id, text, client_msg_id, created ms,
--   the message ids whose entries to remove (a delete's scrub list, space-separated; one
--   the inbox never got is remembered as appended, at the delete's entry, so a late append
--   of it -- a claim, a retry racing the delete -- is {"gone"}),
--   then more fields of the entry, name value ... (reply, event)
-- then one pair per append, in order: the message's block number (1-based), and "1" when
-- the recipient is the message's sender (a message, not an event: the recipient's read
-- marker of the channel moves up to it: your own messages are read).
-- Append i (0-based) uses KEYS[3i+1 .. 3i+3]:
-- KEYS[+1] chat:inbox:{u:<user>}      stream: the inbox (auto ids)
-- KEYS[+2] chat:inbox:{u:<user>}:ids  zset message id -> the ms part of its inbox entry id
--          (the newest ARGV[2] ids are kept: a retry is recognised while fewer than that
--          many messages reached the inbox since the first append)
-- KEYS[+3] chat:read:{u:<user>}       hash channel id -> seq read
-- Returns one reply per append, in order: {"ok", previous entry id or "0-0", entry id},
-- {"dup", previous, entry id} for an entry already there, {"gone"} (already appended,
-- and trimmed from the inbox since), or {"error", text}.
local function entry_of(K, message_id)
  local found = redis.call('ZSCORE', K[2], message_id)
  if not found then return nil end
  local ms = string.format('%d', tonumber(found))
  for _, row in ipairs(redis.call('XRANGE', K[1], ms .. '-0', ms .. '-18446744073709551615')) do
    local f = row[2]
    for i = 1, #f, 2 do
      if f[i] == 'message_id' and f[i + 1] == message_id then return row[1] end
    end
  end
  return false
end

local function append_one(K, M, mine)
  local here = entry_of(K, M[2])
  if here then
    local before = redis.call('XREVRANGE', K[1], '(' .. here, '-', 'COUNT', 1)
    local prev = '0-0'
    if #before > 0 then prev = before[1][1] end
    return {'dup', prev, here}
  end
  if here == false then return {'gone'} end
  local scrub, unseen = {}, {}
  for message_id in string.gmatch(M[8], '%d+') do
    local id = entry_of(K, message_id)
    if id then scrub[#scrub + 1] = id elseif id == nil then unseen[#unseen + 1] = message_id end
  end
  local read = tonumber(redis.call('HGET', K[3], M[1])) or 0
  if #scrub > 0 then redis.call('XDEL', K[1], unpack(scrub)) end
  local newest = redis.call('XREVRANGE', K[1], '+', '-', 'COUNT', 1)
  local prev = '0-0'
  if #newest > 0 then prev = newest[1][1] end
  local id = redis.call('XADD', K[1], 'MAXLEN', '~', ARGV[1], '*',
    'channel_id', M[1], 'message_id', M[2], 'seq', M[3],
    'sender_id', M[4], 'text', M[5], 'client_msg_id', M[6],
    'created_ms', M[7], unpack(M, 9))
  local ms = string.match(id, '^(%d+)-')
  redis.call('ZADD', K[2], ms, M[2])
  for _, message_id in ipairs(unseen) do redis.call('ZADD', K[2], ms, message_id) end
  local kept = tonumber(ARGV[2])
  if redis.call('ZCARD', K[2]) > kept then
    redis.call('ZREMRANGEBYRANK', K[2], 0, -(kept + 1))
  end
  if mine == '1' and tonumber(M[3]) > read then
    redis.call('HSET', K[3], M[1], M[3])
  end
  return {'ok', prev, id}
end

local messages, at = {}, 4
for m = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[at])
  local M = {}
  for j = 1, n do M[j] = ARGV[at + j] end
  messages[m] = M
  at = at + n + 1
end
local replies = {}
for i = 0, #KEYS / 3 - 1 do
  local K = {KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]}
  local ok, reply = pcall(append_one, K, messages[tonumber(ARGV[at + 2 * i])],
    ARGV[at + 2 * i + 1])
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    reply = {'error', tostring(reply)}
  end
  replies[#replies + 1] = reply
end
return replies
"""

FANOUT_CLAIM = """
-- Take over the pending-fanout records that are due, of one or more channel buckets (one
-- call per bucket slot on a cluster, one for every bucket on one Redis): each taken
-- record's claim time moves ARGV[1] ms ahead (so it is taken again if this claimer dies
-- too) and it is returned; a due name without a record (its fanout finished between
-- the two removals) is dropped.
-- Bucket i (0-based) uses KEYS[2i+1 .. 2i+2]:
-- KEYS[+1] chat:fanout:{cb:<b>}:due  zset record -> claim ms (Redis clock)
-- KEYS[+2] chat:fanout:{cb:<b>}:rec  hash record -> recipient ids
-- ARGV[1] claim delay ms   ARGV[2] most records to take per bucket
-- Returns one reply per bucket, in order: {name_1, recipients_1, name_2, ...}, or
-- {"error", text} (a Redis error in that bucket; the others are unaffected).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function claim(due, records)
  local out = {}
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, ARGV[2])) do
    local recipients = redis.call('HGET', records, name)
    if recipients then
      redis.call('ZADD', due, now + tonumber(ARGV[1]), name)
      out[#out + 1] = name
      out[#out + 1] = recipients
    else
      redis.call('ZREM', due, name)
    end
  end
  return out
end
local replies = {}
for i = 1, #KEYS, 2 do
  local ok, reply = pcall(claim, KEYS[i], KEYS[i + 1])
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

SOURCES = {
    "send_many": SEND_MANY,
    "append_many": APPEND_MANY,
    "claim": FANOUT_CLAIM,
    "cache_members": CACHE_MEMBERS,
    "set_cursor": SET_CURSOR,
    "set_read": SET_READ,
}
"""The scripts the store runs, by name (:class:`feedchat_runtime.lua.LuaScripts`)."""

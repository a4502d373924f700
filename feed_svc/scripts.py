"""The Lua scripts feed_svc runs in Redis, one constant each, with their KEYS and ARGV.

Every key comes in through KEYS (names are built in :mod:`feed_svc.keys` only) and every
script touches one hash slot: on a Redis Cluster the store calls them per slot. They run
through :class:`feedchat_runtime.lua.LuaScripts` (:data:`SOURCES`).

Ids in sorted sets are zero-padded 20-digit decimals with score 0, ordered with
ZRANGEBYLEX: Snowflake ids exceed 2^53, so they can never be float scores.
"""

from __future__ import annotations

TAKE_TOKEN = """
-- Token bucket: take one token if there is one.
-- KEYS[1] bucket hash {tokens, ms}
-- ARGV[1] rate (tokens per second), ARGV[2] burst (bucket size), ARGV[3] now (ms)
-- Returns {1, 0} when a token was taken, else {0, ms until one is available}.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate / 1000)
  last = now
end
local ttl = math.ceil(burst / rate * 1000) + 1000
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ms', last)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, 0}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', last)
redis.call('PEXPIRE', KEYS[1], ttl)
return {0, math.ceil((1 - tokens) * 1000 / rate)}
"""

FANOUT_INSERT = """
-- Insert one feed entry into the cached feeds of a batch of active followers, and announce
-- it to those who have a StreamFeed open. (Activity and open streams were read before, in
-- one round trip; on a Redis Cluster a batch is the followers of one hash slot.)
-- KEYS feed zset per follower
-- ARGV[1] entry member '<20-digit post id>:<author id>', ARGV[2] cache cap,
-- ARGV[2 + i] live channel of KEYS[i]'s user ('' when no stream of theirs is open)
-- ZADD of the same member is a no-op, so a re-run job inserts nothing twice. Returns #KEYS.
local member, cap = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 0, member)
  redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
  local channel = ARGV[i + 2]
  if channel ~= '' then redis.call('PUBLISH', channel, member) end
end
return #KEYS
"""

MERGE_ENTRIES = """
-- Add entries to one feed cache and keep it capped; optionally set its floor.
-- KEYS[1] feed zset, KEYS[2] floor string (cache complete for ids >= floor)
-- ARGV[1] cap, ARGV[2] new floor ('' keeps it), ARGV[3..] members
for i = 3, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = 0
    args[#args + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[1]) - 1)
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
return redis.call('ZCARD', KEYS[1])
"""

REMOVE_ENTRIES = """
-- Remove entries from one feed cache without changing what it is complete for.
-- KEYS[1] feed zset, KEYS[2] floor string (cache complete for ids >= floor)
-- ARGV[1] cache cap, ARGV[2] ':<author id>' to remove every entry of that author ('' none),
-- ARGV[3..] members to remove as well ('<20-digit post id>:<author id>')
-- A full cache is complete for ids at or above its oldest entry (older ones were trimmed).
-- A removal leaves it below the cap, so that bound is first made the stored floor (never
-- lowered); otherwise reads would take the shrunk cache as complete down to the old floor.
-- Returns the number of entries removed.
local size = redis.call('ZCARD', KEYS[1])
if size == 0 then return 0 end
local full_from = nil
if size >= tonumber(ARGV[1]) then
  full_from = string.sub(redis.call('ZRANGE', KEYS[1], 0, 0)[1], 1, 20)
end
local doomed = {}
local suffix = ARGV[2]
if suffix ~= '' then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(member, -#suffix) == suffix then doomed[#doomed + 1] = member end
  end
end
for i = 3, #ARGV do doomed[#doomed + 1] = ARGV[i] end
local removed = 0
for i = 1, #doomed, 500 do
  removed = removed + redis.call('ZREM', KEYS[1], unpack(doomed, i, math.min(i + 499, #doomed)))
end
if removed > 0 and full_from then
  local floor = redis.call('GET', KEYS[2])
  if not floor or full_from > floor then redis.call('SET', KEYS[2], full_from) end
end
return removed
"""

SPLIT_JOB = """
-- Replace a post's first fanout job by its chunk jobs, once.
-- KEYS[1] job stream, KEYS[2] post progress hash
-- ARGV[1] group, ARGV[2] id of the job being split, ARGV[3] followers total,
-- ARGV[4] now ms, ARGV[5..] chunk specs: post, author, from, to (4 values each)
-- Only the worker whose XACK wins adds the chunks: a split re-run after a crash, or by a
-- second worker that claimed the job, changes nothing.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local chunks = 0
for i = 5, #ARGV, 4 do
  redis.call('XADD', KEYS[1], '*', 'kind', 'chunk', 'post', ARGV[i], 'author', ARGV[i + 1],
             'from', ARGV[i + 2], 'to', ARGV[i + 3])
  chunks = chunks + 1
end
redis.call('HSET', KEYS[2], 'total', ARGV[3], 'chunks', chunks)
if chunks == 0 then redis.call('HSET', KEYS[2], 'finished_ms', ARGV[4]) end
return 1
"""

_LOG_LANDED = """
-- A post landed in its readers' feeds: append it to the landed log (entries older than the
-- resume window trimmed) and announce the log position on the control channel. The
-- announcement follows the post's own live messages, so a feed_svc process that hears
-- 'landed:<position>' has heard every live message of every post logged up to there.
local function log_landed(log, member, min_ms, control)
  local position = redis.call('XADD', log, 'MINID', '~', min_ms, '*', 'e', member)
  redis.call('PUBLISH', control, 'landed:' .. position)
end
"""

ACK_CHUNK = (
    _LOG_LANDED
    + """
-- Acknowledge a chunk job and count its followers, once; log the post as landed when it
-- was written into any feed.
-- KEYS[1] job stream, KEYS[2] post progress hash, KEYS[3] landed log
-- ARGV[1] group, ARGV[2] job id, ARGV[3] written, ARGV[4] skipped, ARGV[5] now ms,
-- ARGV[6] feed entry '<20-digit post id>:<author>', ARGV[7] log trim bound (ms),
-- ARGV[8] control channel
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
if tonumber(ARGV[3]) > 0 then log_landed(KEYS[3], ARGV[6], ARGV[7], ARGV[8]) end
if redis.call('EXISTS', KEYS[2]) == 0 then return 1 end
redis.call('HINCRBY', KEYS[2], 'written', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'skipped', ARGV[4])
local done = redis.call('HINCRBY', KEYS[2], 'chunks_done', 1)
if done >= tonumber(redis.call('HGET', KEYS[2], 'chunks') or '-1') then
  redis.call('HSET', KEYS[2], 'finished_ms', ARGV[5])
end
return 1
"""
)

QUEUE_POST = (
    _LOG_LANDED
    + """
-- Queue a recorded post's fanout (or, for a celebrity, announce it and log it as landed at
-- once), and its post alerts job; only once: a retried CreatePost finds the progress
-- record and changes nothing.
-- KEYS[1] post progress hash, KEYS[2] job stream, KEYS[3] landed log
-- ARGV[1] now ms, ARGV[2] plan: 'pulled' (a celebrity: never fanned out), 'whole' (one
-- chunk job for every follower) or 'split' (a job that splits the followers into chunks),
-- ARGV[3] followers, ARGV[4] '1' to queue a post alerts job, ARGV[5] progress TTL (s),
-- ARGV[6] feed entry, ARGV[7] landed log trim bound (ms), ARGV[8] control channel,
-- ARGV[9] the author's channel, ARGV[10..] job fields (name, value pairs) after 'kind'
-- Returns 1 when queued now, 0 when it was already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now, plan, followers = ARGV[1], ARGV[2], tonumber(ARGV[3])
local job = {}
for i = 10, #ARGV do job[#job + 1] = ARGV[i] end
if plan == 'pulled' then
  redis.call('HSET', KEYS[1], 'created_ms', now, 'state', 'pulled', 'finished_ms', now)
  redis.call('PUBLISH', ARGV[9], ARGV[6])
  log_landed(KEYS[3], ARGV[6], ARGV[7], ARGV[8])
elseif plan == 'whole' and followers == 0 then
  redis.call('HSET', KEYS[1], 'created_ms', now, 'state', 'fanout', 'total', 0, 'chunks', 0,
             'finished_ms', now)
elseif plan == 'whole' then
  redis.call('HSET', KEYS[1], 'created_ms', now, 'state', 'fanout', 'total', followers,
             'chunks', 1)
  redis.call('XADD', KEYS[2], '*', 'kind', 'chunk', unpack(job))
else
  redis.call('HSET', KEYS[1], 'created_ms', now, 'state', 'fanout')
  redis.call('XADD', KEYS[2], '*', 'kind', 'split', unpack(job))
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[4] == '1' then redis.call('XADD', KEYS[2], '*', 'kind', 'alerts', unpack(job)) end
return 1
"""
)

RESUME_STATE = """
-- What a resuming StreamFeed must replay besides the feed's newer ids, read in one step.
-- KEYS[1] landed log, KEYS[2] job stream
-- ARGV[1] group, ARGV[2] log position the client resumes after ('' : read no log),
-- ARGV[3] most log entries to return, ARGV[4] most pending jobs to read
-- Returns {mark, landed, more, pending}: mark = the log's newest position ('0-0' if none);
-- landed = members logged after ARGV[2] (so up to mark: one atomic step); more = 1 when
-- there were more than ARGV[3], or more than ARGV[4] pending jobs; pending = '<post>:<author>'
-- of chunk jobs delivered to a worker but not acknowledged (their writes may have begun
-- before the stream listened, and they are logged only later).
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local mark = newest[1] and newest[1][1] or '0-0'
local landed, more = {}, 0
if ARGV[2] ~= '' then
  local found = redis.pcall('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', tonumber(ARGV[3]) + 1)
  if type(found) == 'table' and not found.err then
    for i, item in ipairs(found) do
      if i > tonumber(ARGV[3]) then more = 1 break end
      landed[#landed + 1] = item[2][2]
    end
  end
end
local pending = {}
local held = redis.pcall('XPENDING', KEYS[2], ARGV[1], '-', '+', tonumber(ARGV[4]) + 1)
if type(held) == 'table' and not held.err then
  if #held > tonumber(ARGV[4]) then more = 1 end
  for _, job in ipairs(held) do
    local found = redis.call('XRANGE', KEYS[2], job[1], job[1])
    if found[1] then
      local f = {}
      for i = 1, #found[1][2], 2 do f[found[1][2][i]] = found[1][2][i + 1] end
      if f['kind'] == 'chunk' and f['post'] and f['author'] then
        pending[#pending + 1] = f['post'] .. ':' .. f['author']
      end
    end
  end
end
return {mark, landed, more, pending}
"""

RAW_INSERT_BASELINE = """
-- Benchmark baseline: insert one member into many capped feeds, nothing else.
-- KEYS feed zsets; ARGV[1] member, ARGV[2] cap
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -tonumber(ARGV[2]) - 1)
end
return #KEYS
"""

MERGE_NEWEST = """
-- The newest n distinct entries across a few newest-first id lists, merged server-side.
-- KEYS: lex zsets (a feed cache: '<id>:<author>' members; an author's posts: '<id>')
-- ARGV[1] upper bound ('+' or '(<id>'), ARGV[2] lower bound ('-' or '[<id>'), ARGV[3] n,
-- ARGV[3 + i] author of KEYS[i]'s members, or '' when they carry it
-- Returns '<20-digit id>:<author>' members, newest first.
local n = tonumber(ARGV[3])
local all = {}
for i, key in ipairs(KEYS) do
  local author = ARGV[3 + i]
  for _, m in ipairs(redis.call('ZREVRANGEBYLEX', key, ARGV[1], ARGV[2], 'LIMIT', 0, n)) do
    if author ~= '' then m = m .. ':' .. author end
    all[#all + 1] = m
  end
end
table.sort(all, function(a, b) return a > b end)
local out, last = {}, nil
for _, m in ipairs(all) do
  local id = string.sub(m, 1, 20)
  if id ~= last then
    out[#out + 1] = m
    last = id
    if #out >= n then break end
  end
end
return out
"""

SOURCES = {
    "take_token": TAKE_TOKEN,
    "fanout_insert": FANOUT_INSERT,
    "merge_entries": MERGE_ENTRIES,
    "remove_entries": REMOVE_ENTRIES,
    "split_job": SPLIT_JOB,
    "ack_chunk": ACK_CHUNK,
    "queue_post": QUEUE_POST,
    "resume_state": RESUME_STATE,
    "merge_newest": MERGE_NEWEST,
}
"""The scripts the store runs, by name (RAW_INSERT_BASELINE is the benchmark's)."""

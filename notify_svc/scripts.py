"""The Lua scripts of notify_svc's store, each commented with its KEYS and ARGV.

Every script touches keys of one user only, all carrying that user's hash tag, so each
runs on one Redis Cluster slot, and every key it touches comes in KEYS. A key that
depends on what the script finds (the open notification's hash, the hashes a full list
trims) is named by the caller from a first answer: the script checks that what it finds
matches what the caller declared and otherwise changes nothing and answers ``retry`` with
what it found, for the caller's next call (see NotifyStore.apply).
"""

APPLY = """
-- Apply one queue job to the user's notifications, exactly once per (user, message).
-- KEYS[1] seen marker   KEYS[2] mutes   KEYS[3] open key of (kind, channel)
-- KEYS[4] list          KEYS[5] hash of the notification this message would open
-- KEYS[6 .. 5+n] hashes of the notifications the caller expects a full list to drop
-- KEYS[6+n] (when ARGV[10] is not '') hash of the open notification ARGV[10]
-- ARGV[1] padded message id (the new notification's id)   ARGV[2] kind   ARGV[3] channel_id
-- ARGV[4] sender_id   ARGV[5] preview   ARGV[6] message time ms   ARGV[7] collapse window ms
-- ARGV[8] marker ttl ms   ARGV[9] notifications kept   ARGV[10] padded id of the open
-- notification the caller expects ('' none)   ARGV[11] n   ARGV[12 .. 11+n] padded ids
-- of the notifications it expects to be dropped (their hashes are KEYS[6 .. 5+n]).
-- Returns {outcome, padded nid, fresh}: outcome created|collapsed|muted; fresh 0 when the
-- marker already existed (a retried job: nothing changes, the first outcome is replayed).
-- Or, having changed nothing, {'retry', open id or '', 0, ids to drop...}: call again
-- declaring those keys.
local seen = redis.call('GET', KEYS[1])
if seen then
  local sep = string.find(seen, ':', 1, true)
  return {string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1), 0}
end
local ttl = ARGV[8]
if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then
  redis.call('SET', KEYS[1], 'muted:', 'PX', ttl)
  return {'muted', '', 1}
end
local n = tonumber(ARGV[11])
local open = redis.call('GET', KEYS[3])
if open and open ~= ARGV[10] then return {'retry', open, 0} end
if open then
  local nkey = KEYS[6 + n]
  if redis.call('HGET', nkey, 'read') == '0' then
    redis.call('HINCRBY', nkey, 'count', 1)
    -- fixed-width ids: string order is numeric order; late arrivals keep the newest preview
    if ARGV[1] > redis.call('HGET', nkey, 'last_message_id') then
      redis.call('HSET', nkey, 'last_message_id', ARGV[1], 'sender_id', ARGV[4],
                 'preview', ARGV[5], 'updated_ms', ARGV[6])
    end
    redis.call('SET', KEYS[1], 'collapsed:' .. open, 'PX', ttl)
    return {'collapsed', open, 1}
  end
end
-- A full list drops its oldest: the smallest ids of the list plus the new one (all
-- scores are 0, so ZRANGE's order is the ids' order).
local over = redis.call('ZCARD', KEYS[4]) + 1 - tonumber(ARGV[9])
local drop = {}
local declared = {}
for j = 1, n do declared[ARGV[11 + j]] = KEYS[5 + j] end
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[4], 0, over - 1)
  table.insert(oldest, ARGV[1])
  table.sort(oldest)
  local missing = false
  for i = 1, over do
    local id = oldest[i]
    if id ~= ARGV[1] then
      table.insert(drop, id)
      if not declared[id] then missing = true end
    end
  end
  if missing then return {'retry', open or '', 0, unpack(drop)} end
end
redis.call('HSET', KEYS[5], 'kind', ARGV[2], 'channel_id', ARGV[3], 'sender_id', ARGV[4],
           'first_message_id', ARGV[1], 'last_message_id', ARGV[1], 'count', 1,
           'preview', ARGV[5], 'created_ms', ARGV[6], 'updated_ms', ARGV[6], 'read', 0)
redis.call('ZADD', KEYS[4], 0, ARGV[1])
if over > 0 then
  local dropped = redis.call('ZPOPMIN', KEYS[4], over)
  for i = 1, #dropped, 2 do
    if dropped[i] == ARGV[1] then redis.call('DEL', KEYS[5])
    else redis.call('DEL', declared[dropped[i]]) end
  end
end
if tonumber(ARGV[7]) > 0 then
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[7])
end
redis.call('SET', KEYS[1], 'created:' .. ARGV[1], 'PX', ttl)
return {'created', ARGV[1], 1}
"""

MARK_READ = """
-- Mark notifications read and stop them collapsing new messages.
-- KEYS[1 .. n] the notifications' hashes   KEYS[n+1 .. 2n] the open key of each one's
-- (kind, channel)   ARGV[1 .. n] their padded ids.
-- Returns how many were unread before.
local n = #ARGV
local marked = 0
for i = 1, n do
  if redis.call('HGET', KEYS[i], 'read') == '0' then
    redis.call('HSET', KEYS[i], 'read', 1)
    marked = marked + 1
    if redis.call('GET', KEYS[n + i]) == ARGV[i] then redis.call('DEL', KEYS[n + i]) end
  end
end
return marked
"""

PUT_DEVICE = """
-- Add or replace a device unless the user already has the maximum.
-- KEYS[1] the devices hash   ARGV[1] device id   ARGV[2] device JSON   ARGV[3] max devices
-- Returns 1 when stored (or replaced), 0 when the limit refused it.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
   or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""

ADD_MUTE = """
-- Mute a channel unless the user already mutes the maximum.
-- KEYS[1] the mutes set   ARGV[1] channel id (decimal)   ARGV[2] max muted channels
-- Returns 1 when stored (or already muted), 0 when the limit refused it.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1
   or redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

SOURCES = {
    "apply": APPLY,
    "mark_read": MARK_READ,
    "put_device": PUT_DEVICE,
    "add_mute": ADD_MUTE,
}
"""The scripts the store runs, by name (:class:`feedchat_runtime.lua.LuaScripts`)."""

-- Shared by the store's scripts: prepended to each when it is loaded, after a generated line
-- `local STATUSES = {...}` (notifier.storage.records.STATUSES, in order).
--
-- KEYS layout, the same for every store script (notifier.storage.keys.Keys.script_keys):
--   KEYS[1] P:scheduled   KEYS[2] P:scheduled:messages   KEYS[3] the queue   KEYS[4] P:all
--   KEYS[5] the webhook inbox   KEYS[6 ..] P:status:S for each S of STATUSES, in order
--   KEYS[FIRST_KEY ..] the script's own keys (a record hash, its attempts, ...)
local SCHEDULED, SCHEDULED_MESSAGES, QUEUE, ALL = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local WEBHOOK_INBOX = KEYS[5]
local INDEX = {}
for i, status in ipairs(STATUSES) do INDEX[status] = KEYS[5 + i] end
local FIRST_KEY = 6 + #STATUSES

-- Append the fields of the JSON object `json` to the HSET pairs `flat`; returns `flat`.
local function with_json_fields(flat, json)
  for k, v in pairs(cjson.decode(json)) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  return flat
end

-- Index a new record under its status and among all records, scored by creation time.
local function index_new(id, status, created)
  redis.call('ZADD', INDEX[status], created, id)
  redis.call('ZADD', ALL, created, id)
end

-- Move `id` from the index of status `from` to that of `to`, keeping its creation-time score.
local function move_index(key, id, from, to)
  if from == to then return end
  local created = redis.call('HGET', key, 'created_at')
  redis.call('ZREM', INDEX[from], id)
  redis.call('ZADD', INDEX[to], created, id)
end

-- The lease of a record being sent when it runs past `now` (another delivery holds it), else nil.
local function live_lease(key, now)
  local lease = tonumber(redis.call('HGET', key, 'lease_until') or '0') or 0
  if lease > now then return lease end
  return nil
end

local function unschedule(id)
  redis.call('ZREM', SCHEDULED, id)
  redis.call('HDEL', SCHEDULED_MESSAGES, id)
end

-- Queue `message` now, keep it until `due` (schedule), or drop the pending one (unschedule).
local function apply_action(action, id, message, due)
  if action == 'queue' then
    redis.call('LPUSH', QUEUE, message)
  elseif action == 'schedule' then
    redis.call('ZADD', SCHEDULED, due, id)
    redis.call('HSET', SCHEDULED_MESSAGES, id, message)
  elseif action == 'unschedule' then
    unschedule(id)
  end
end

-- Queue the webhook events ARGV[first ..] (JSON each) for the fan-out, in the same step as the
-- record write they report: an event is never lost, nor emitted for a write that did not happen.
local function emit_events(first)
  for i = first, #ARGV do
    redis.call('LPUSH', WEBHOOK_INBOX, ARGV[i])
  end
end

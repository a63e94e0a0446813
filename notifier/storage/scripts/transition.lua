-- Move a record from one of the allowed statuses to a new one, optionally recording an
-- attempt and queueing, scheduling or unscheduling a task message.
-- KEYS[FIRST_KEY] the record, KEYS[FIRST_KEY + 1] its attempts
-- ARGV: id, now, ttl, allowed(csv), new_status, fields(json), attempt(json|''),
--       action(queue|schedule|unschedule|none), message, due, honour_lease(0|1),
--       claim(0|1: count an attempt and return the record),
--       webhook events (JSON each, emitted when the transition is made)...
-- Returns {'missing'} | {'busy', lease} | {'refused', status} | {'ok', previous[, record]}
local key, attempts = KEYS[FIRST_KEY], KEYS[FIRST_KEY + 1]
local id, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local claim = ARGV[12] == '1'
local status = redis.call('HGET', key, 'status')
if not status then return {'missing'} end
if ARGV[11] == '1' and status == 'sending' then
  local lease = live_lease(key, now)
  if lease then return {'busy', tostring(lease)} end
end
local allowed = false
for s in string.gmatch(ARGV[4], '[^,]+') do
  if s == status then allowed = true end
end
if not allowed then return {'refused', status} end
local new = ARGV[5]
redis.call('HSET', key, unpack(with_json_fields({'status', new, 'updated_at', ARGV[2]}, ARGV[6])))
if claim then redis.call('HINCRBY', key, 'attempt_count', 1) end
redis.call('EXPIRE', key, ttl)
if ARGV[7] ~= '' then
  redis.call('RPUSH', attempts, ARGV[7])
  redis.call('EXPIRE', attempts, ttl)
end
move_index(key, id, status, new)
apply_action(ARGV[8], id, ARGV[9], ARGV[10])
emit_events(13)
if claim then
  return {'ok', status, redis.call('HGETALL', key)}
end
return {'ok', status}

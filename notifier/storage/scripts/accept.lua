-- Create a record and queue (or schedule) its task message, unless the idempotency key or
-- the id was seen before.
-- KEYS[FIRST_KEY] the record, KEYS[FIRST_KEY + 1] the idempotency key (only when one is used)
-- ARGV: id, now, ttl, status, fields(json), action(queue|schedule|none), message, due,
--       idem_value, idem_ttl, webhook events (JSON each, emitted when accepted)...
-- Returns {'duplicate', idem_value} | {'exists', status} | {'accepted', status}
local key, idem_key = KEYS[FIRST_KEY], KEYS[FIRST_KEY + 1]
local id, now, ttl, status = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if idem_key then
  local existing = redis.call('GET', idem_key)
  if existing then return {'duplicate', existing} end
end
local current = redis.call('HGET', key, 'status')
if current then return {'exists', current} end
local flat = {'id', id, 'status', status, 'created_at', now, 'updated_at', now}
redis.call('HSET', key, unpack(with_json_fields(flat, ARGV[5])))
redis.call('EXPIRE', key, ttl)
index_new(id, status, now)
apply_action(ARGV[6], id, ARGV[7], ARGV[8])
if idem_key then
  redis.call('SET', idem_key, ARGV[9], 'EX', tonumber(ARGV[10]))
end
emit_events(11)
return {'accepted', status}

-- Create a record already claimed (`sending` with a lease, attempt 1) when the id is new,
-- otherwise claim the existing record exactly as transition.lua with claim=1 does. One round
-- trip for `notifier.send`'s first attempt instead of claim -> accept -> claim.
-- KEYS[FIRST_KEY] the record
-- ARGV: id, now, ttl, fields(json), lease_until, webhook events (JSON each, emitted only
--       when the record is created)...
-- Returns {'created', 'queued', record} | {'ok', previous, record} | {'busy', lease} |
--         {'refused', status}
local key = KEYS[FIRST_KEY]
local id, now, ttl, lease_until = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]
local status = redis.call('HGET', key, 'status')
if not status then
  local flat = with_json_fields({'id', id, 'created_at', now, 'updated_at', now}, ARGV[4])
  -- After the caller's fields, so that these win.
  for _, v in ipairs({'status', 'sending', 'lease_until', lease_until, 'attempt_count', '1'}) do
    flat[#flat + 1] = v
  end
  redis.call('HSET', key, unpack(flat))
  redis.call('EXPIRE', key, ttl)
  index_new(id, 'sending', now)
  emit_events(6)
  return {'created', 'queued', redis.call('HGETALL', key)}
end
if status == 'sending' then
  local lease = live_lease(key, tonumber(now))
  if lease then return {'busy', tostring(lease)} end
elseif status ~= 'queued' and status ~= 'retrying' then
  return {'refused', status}
end
redis.call('HSET', key, 'status', 'sending', 'updated_at', now, 'lease_until', lease_until)
redis.call('HINCRBY', key, 'attempt_count', 1)
redis.call('EXPIRE', key, ttl)
move_index(key, id, status, 'sending')
return {'ok', status, redis.call('HGETALL', key)}

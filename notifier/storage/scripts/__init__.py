"""Lua scripts behind NotificationStore: each status change is one atomic step in Redis.

Keys (``P`` is ``REDIS_PREFIX``): ``P:n:ID`` the record hash, ``P:n:ID:attempts`` its attempt
list, ``P:status:S`` an index per status and ``P:all`` (sorted by creation time),
``P:scheduled`` due times and ``P:scheduled:messages`` the task message to queue when due.
Keys are derived inside the scripts, so a Redis Cluster is not supported.
"""

from __future__ import annotations

__all__ = ["ACCEPT", "CLEANUP", "CREATE_AND_CLAIM", "DISPATCH_DUE", "TRANSITION"]

# Create a record and queue (or schedule) its task message, unless the idempotency key or
# the id was seen before.
# ARGV: prefix, id, now, ttl, status, fields(json), action(queue|schedule|none), message,
#       due, queue, idem_key, idem_value, idem_ttl
ACCEPT = """
local p, id, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local status, action = ARGV[5], ARGV[7]
local idem_key = ARGV[11]
if idem_key ~= '' then
  local existing = redis.call('GET', idem_key)
  if existing then return {'duplicate', existing} end
end
local key = p .. ':n:' .. id
local current = redis.call('HGET', key, 'status')
if current then return {'exists', current} end
local flat = {'id', id, 'status', status, 'created_at', now, 'updated_at', now}
for k, v in pairs(cjson.decode(ARGV[6])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', key, unpack(flat))
redis.call('EXPIRE', key, ttl)
redis.call('ZADD', p .. ':status:' .. status, now, id)
redis.call('ZADD', p .. ':all', now, id)
if action == 'queue' then
  redis.call('LPUSH', ARGV[10], ARGV[8])
elseif action == 'schedule' then
  redis.call('ZADD', p .. ':scheduled', ARGV[9], id)
  redis.call('HSET', p .. ':scheduled:messages', id, ARGV[8])
end
if idem_key ~= '' then
  redis.call('SET', idem_key, ARGV[12], 'EX', tonumber(ARGV[13]))
end
return {'accepted', status}
"""

# Move a record from one of the allowed statuses to a new one, optionally recording an
# attempt and queueing, scheduling or unscheduling a task message.
# ARGV: prefix, id, now, ttl, allowed(csv), new_status, fields(json), attempt(json|''),
#       action(queue|schedule|unschedule|none), message, due, queue, honour_lease(0|1),
#       claim(0|1: count an attempt, set the lease and return the record)
TRANSITION = """
local p, id, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local key = p .. ':n:' .. id
local status = redis.call('HGET', key, 'status')
if not status then return {'missing'} end
if ARGV[13] == '1' and status == 'sending' then
  local lease = tonumber(redis.call('HGET', key, 'lease_until') or '0')
  if lease > now then return {'busy', tostring(lease)} end
end
local allowed = false
for s in string.gmatch(ARGV[5], '[^,]+') do
  if s == status then allowed = true end
end
if not allowed then return {'refused', status} end
local new = ARGV[6]
local flat = {'status', new, 'updated_at', ARGV[3]}
for k, v in pairs(cjson.decode(ARGV[7])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', key, unpack(flat))
if ARGV[14] == '1' then redis.call('HINCRBY', key, 'attempt_count', 1) end
redis.call('EXPIRE', key, ttl)
if ARGV[8] ~= '' then
  redis.call('RPUSH', key .. ':attempts', ARGV[8])
  redis.call('EXPIRE', key .. ':attempts', ttl)
end
if new ~= status then
  local created = redis.call('HGET', key, 'created_at')
  redis.call('ZREM', p .. ':status:' .. status, id)
  redis.call('ZADD', p .. ':status:' .. new, created, id)
end
local action = ARGV[9]
if action == 'queue' then
  redis.call('LPUSH', ARGV[12], ARGV[10])
elseif action == 'schedule' then
  redis.call('ZADD', p .. ':scheduled', ARGV[11], id)
  redis.call('HSET', p .. ':scheduled:messages', id, ARGV[10])
elseif action == 'unschedule' then
  redis.call('ZREM', p .. ':scheduled', id)
  redis.call('HDEL', p .. ':scheduled:messages', id)
end
if ARGV[14] == '1' then
  return {'ok', status, redis.call('HGETALL', key)}
end
return {'ok', status}
"""

# Create a record already claimed (``sending`` with a lease, attempt 1) when the id is new,
# otherwise claim the existing record exactly as TRANSITION with claim=1 does. One round trip
# for ``notifier.send``'s first attempt instead of claim -> accept -> claim.
# ARGV: prefix, id, now, ttl, fields(json), lease_until
# Returns {'created', 'queued', hash} | {'ok', previous, hash} | {'busy', lease} |
#         {'refused', status}
CREATE_AND_CLAIM = """
local p, id, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local key = p .. ':n:' .. id
local status = redis.call('HGET', key, 'status')
if not status then
  local flat = {'id', id, 'created_at', now, 'updated_at', now}
  for k, v in pairs(cjson.decode(ARGV[5])) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  flat[#flat + 1] = 'status'
  flat[#flat + 1] = 'sending'
  flat[#flat + 1] = 'lease_until'
  flat[#flat + 1] = ARGV[6]
  flat[#flat + 1] = 'attempt_count'
  flat[#flat + 1] = '1'
  redis.call('HSET', key, unpack(flat))
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', p .. ':status:sending', now, id)
  redis.call('ZADD', p .. ':all', now, id)
  return {'created', 'queued', redis.call('HGETALL', key)}
end
if status == 'sending' then
  local lease = tonumber(redis.call('HGET', key, 'lease_until') or '0') or 0
  if lease > tonumber(now) then return {'busy', tostring(lease)} end
elseif status ~= 'queued' and status ~= 'retrying' then
  return {'refused', status}
end
redis.call('HSET', key, 'status', 'sending', 'updated_at', now, 'lease_until', ARGV[6])
redis.call('HINCRBY', key, 'attempt_count', 1)
redis.call('EXPIRE', key, ttl)
if status ~= 'sending' then
  local created = redis.call('HGET', key, 'created_at')
  redis.call('ZREM', p .. ':status:' .. status, id)
  redis.call('ZADD', p .. ':status:sending', created, id)
end
return {'ok', status, redis.call('HGETALL', key)}
"""

# Queue every scheduled message that is due. Atomic, so any number of workers may run it
# at once without a lock and without queueing a message twice.
# ARGV: prefix, now, limit, queue
DISPATCH_DUE = """
local p, now = ARGV[1], ARGV[2]
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', p .. ':scheduled', '-inf', now, 'LIMIT', 0, limit)
local queued = 0
for _, id in ipairs(ids) do
  local message = redis.call('HGET', p .. ':scheduled:messages', id)
  redis.call('ZREM', p .. ':scheduled', id)
  redis.call('HDEL', p .. ':scheduled:messages', id)
  local key = p .. ':n:' .. id
  local status = redis.call('HGET', key, 'status')
  if message and status and status ~= 'sent' and status ~= 'failed' and status ~= 'cancelled' then
    if status == 'scheduled' then
      local created = redis.call('HGET', key, 'created_at')
      redis.call('HSET', key, 'status', 'queued', 'updated_at', now)
      redis.call('ZREM', p .. ':status:scheduled', id)
      redis.call('ZADD', p .. ':status:queued', created, id)
    end
    redis.call('LPUSH', ARGV[4], message)
    queued = queued + 1
  end
end
return queued
"""

# Drop index entries older than the retention window (their records have expired).
# ARGV: prefix, cutoff, statuses(csv)
CLEANUP = """
local p, cutoff = ARGV[1], ARGV[2]
local removed = redis.call('ZREMRANGEBYSCORE', p .. ':all', '-inf', cutoff)
for s in string.gmatch(ARGV[3], '[^,]+') do
  removed = removed + redis.call('ZREMRANGEBYSCORE', p .. ':status:' .. s, '-inf', cutoff)
end
return removed
"""

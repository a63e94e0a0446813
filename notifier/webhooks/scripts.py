"""The Lua scripts behind WebhookStore; each gets every key it touches in KEYS."""

from __future__ import annotations

__all__ = ["DISPATCH", "FANOUT", "RECORD", "REPLAY"]

# KEYS: inbox, scheduled, then per event its message key and, per endpoint it goes to, that
# endpoint's msgs, state and pending keys. ARGV: n, now, retention, then per event: raw,
# message JSON, message id, event time, endpoint count, endpoint ids.
# The batch is the inbox's n oldest entries, read by the caller; if another pump took them
# meanwhile nothing is done (-1). Fanning out the same event twice changes nothing (HSETNX).
FANOUT = """
local n = tonumber(ARGV[1])
local now, retention = ARGV[2], tonumber(ARGV[3])
local oldest = redis.call('LRANGE', KEYS[1], -n, -1)
local a, k = 4, 3
local raws = {}
local events = {}
for i = 1, n do
  local raw, body, mid, at, count = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    tonumber(ARGV[a + 4])
  if oldest[i] ~= raw then return -1 end
  local eps = {}
  for j = 1, count do eps[j] = ARGV[a + 4 + j] end
  events[i] = {body, mid, at, eps, k}
  a = a + 5 + count
  k = k + 1 + 3 * count
end
local scheduled = 0
for i = 1, n do
  local body, mid, at, eps, key = events[i][1], events[i][2], events[i][3], events[i][4],
    events[i][5]
  if #eps > 0 then
    redis.call('SET', KEYS[key], body, 'EX', retention)
  end
  for j = 1, #eps do
    local msgs, state, pending = KEYS[key + 3 * j - 2], KEYS[key + 3 * j - 1], KEYS[key + 3 * j]
    if redis.call('HSETNX', state, mid, 'pending|0') == 1 then
      redis.call('ZADD', msgs, at, mid)
      redis.call('SADD', pending, mid)
      redis.call('ZADD', KEYS[2], now, eps[j] .. ' ' .. mid)
      scheduled = scheduled + 1
    end
  end
end
redis.call('LTRIM', KEYS[1], 0, -n - 1)
return scheduled
"""

# KEYS: scheduled, queue. ARGV: now, lease until, mode, then member, task message, member, ...
# mode push: LPUSH each message onto the queue, return how many; return: the broker is RabbitMQ
# (BROKER_URL), return member, message, ... for the caller to publish.
# Several pumps may run at once: a member is queued only while it is still due, and queueing
# moves it to ``lease until`` instead of removing it. The task removes it (or schedules the
# retry) when done; if its message is ever lost, the member falls due again after the lease.
DISPATCH = """
local queued, taken = 0, {}
local now = tonumber(ARGV[1])
for i = 4, #ARGV, 2 do
  local due = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if due and tonumber(due) <= now then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    if ARGV[3] == 'return' then
      taken[#taken + 1] = ARGV[i]
      taken[#taken + 1] = ARGV[i + 1]
    else
      redis.call('LPUSH', KEYS[2], ARGV[i + 1])
    end
    queued = queued + 1
  end
end
if ARGV[3] == 'return' then return taken end
return queued
"""

# KEYS: log, state, pending, failed, scheduled, endpoint.
# ARGV: attempt JSON, log size, message id, state value, outcome (delivered|retry|failed),
#       due, schedule member, now.
# Returns the endpoint's failing_since (0 when it just succeeded), or -1 when it was deleted.
RECORD = """
if redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('ZREM', KEYS[5], ARGV[7])
  return -1
end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
local outcome = ARGV[5]
if outcome == 'delivered' then
  redis.call('SREM', KEYS[3], ARGV[3])
  redis.call('ZREM', KEYS[4], ARGV[3])
  redis.call('ZREM', KEYS[5], ARGV[7])
  redis.call('HDEL', KEYS[6], 'failing_since')
  return '0'
end
redis.call('HSETNX', KEYS[6], 'failing_since', ARGV[8])
if outcome == 'retry' then
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[7])
else
  redis.call('ZREM', KEYS[5], ARGV[7])
  redis.call('SREM', KEYS[3], ARGV[3])
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[3])
end
return redis.call('HGET', KEYS[6], 'failing_since')
"""

# KEYS: state, pending, failed, scheduled, msgs, message. ARGV: message id, member, now, at.
# Puts one message back in line for an endpoint (replay); not when its body has expired.
REPLAY = """
if redis.call('EXISTS', KEYS[6]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'pending|0')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], 'NX', ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
return 1
"""

-- Queue the scheduled messages of `ids` that are due. The caller read the ids from
-- P:scheduled first; each is checked again here, so any number of dispatchers may run at once
-- without a lock and without queueing a message twice (the first removes it from the schedule).
-- KEYS[FIRST_KEY ..] the record of each id, in the order of ARGV's ids
-- ARGV: now, mode (push: LPUSH onto the queue | return: the broker is RabbitMQ, the caller
--       publishes), id...
-- Returns how many messages were queued (push), or the messages (return).
local now, mode = ARGV[1], ARGV[2]
local queued, messages = 0, {}
for i = 3, #ARGV do
  local id, key = ARGV[i], KEYS[FIRST_KEY + i - 3]
  local due = redis.call('ZSCORE', SCHEDULED, id)
  if due and tonumber(due) <= tonumber(now) then
    local message = redis.call('HGET', SCHEDULED_MESSAGES, id)
    unschedule(id)
    local status = redis.call('HGET', key, 'status')
    if message and status and status ~= 'sent' and status ~= 'failed' and status ~= 'cancelled'
      and status ~= 'suppressed' then
      if status == 'scheduled' then
        redis.call('HSET', key, 'status', 'queued', 'updated_at', now)
        move_index(key, id, 'scheduled', 'queued')
      end
      if mode == 'return' then
        messages[#messages + 1] = message
      else
        redis.call('LPUSH', QUEUE, message)
      end
      queued = queued + 1
    end
  end
end
if mode == 'return' then return messages end
return queued

-- Queue the scheduled messages of `members` that are due. The caller read the members from
-- P:scheduled first; each is checked again here, so any number of dispatchers may run at once
-- without a lock and without queueing a message twice (the first removes it from the schedule).
-- KEYS[FIRST_KEY ..] the record of each member's id, in the order of ARGV's members
-- ARGV: now, mode, republish_at, then for each member: the member (an id, or a published
--   member: keys.PUBLISHING + id), its id and its published member
--   mode push: LPUSH onto the queue (Redis broker; one atomic step).
--   mode return: the broker is RabbitMQ and the caller publishes. Each message stays on the
--     schedule as its published member at republish_at until the caller has RabbitMQ's
--     confirm (dispatch_confirm.lua), so a dispatcher killed before the confirm loses nothing:
--     the message is due again at republish_at. Such a member that falls due is published again.
-- Returns how many messages were queued (push), or member, message pairs (return).
local now, mode, republish_at = ARGV[1], ARGV[2], ARGV[3]
local queued, taken = 0, {}
for n = 0, (#ARGV - 3) / 3 - 1 do
  local member, id, publishing = ARGV[4 + 3 * n], ARGV[5 + 3 * n], ARGV[6 + 3 * n]
  local key = KEYS[FIRST_KEY + n]
  local due = redis.call('ZSCORE', SCHEDULED, member)
  if due and tonumber(due) <= tonumber(now) then
    local message = redis.call('HGET', SCHEDULED_MESSAGES, member)
    unschedule(member)
    local status = redis.call('HGET', key, 'status')
    if message and status and status ~= 'sent' and status ~= 'failed' and status ~= 'cancelled'
      and status ~= 'suppressed' then
      if status == 'scheduled' then
        redis.call('HSET', key, 'status', 'queued', 'updated_at', now)
        move_index(key, id, 'scheduled', 'queued')
      end
      if mode == 'return' then
        redis.call('ZADD', SCHEDULED, republish_at, publishing)
        redis.call('HSET', SCHEDULED_MESSAGES, publishing, message)
        taken[#taken + 1] = publishing
        taken[#taken + 1] = message
      else
        redis.call('LPUSH', QUEUE, message)
      end
      queued = queued + 1
    end
  end
end
if mode == 'return' then return taken end
return queued

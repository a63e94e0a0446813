-- After a dispatcher published messages to RabbitMQ (dispatch_due.lua, mode return): drop
-- each member RabbitMQ confirmed, or make it due at `due_again` when the publish failed. A
-- member whose score is no longer `republish_at` was taken again meanwhile and is left alone.
-- ARGV: republish_at, outcome (confirmed | failed), due_again, member...
local republish_at, outcome, due_again = tonumber(ARGV[1]), ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local member = ARGV[i]
  if tonumber(redis.call('ZSCORE', SCHEDULED, member) or '-1') == republish_at then
    if outcome == 'confirmed' then
      unschedule(member)
    else
      redis.call('ZADD', SCHEDULED, due_again, member)
    end
  end
end
return 0

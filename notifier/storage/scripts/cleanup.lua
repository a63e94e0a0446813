-- Drop index entries older than the retention window (their records have expired).
-- ARGV: cutoff
-- Returns how many entries were removed.
local cutoff = ARGV[1]
local removed = redis.call('ZREMRANGEBYSCORE', ALL, '-inf', cutoff)
for _, status in ipairs(STATUSES) do
  removed = removed + redis.call('ZREMRANGEBYSCORE', INDEX[status], '-inf', cutoff)
end
return removed

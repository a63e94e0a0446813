-- Of `ids` (read by the caller from the index of `status`), return those stuck for longer than
-- `stale_after` and mark them recovered, so each is requeued at most once per `stale_after`.
-- Stuck: still in `status`, not scheduled, and no update (for `sending`: no lease) since.
-- KEYS[FIRST_KEY ..] the record of each id, in the order of ARGV's ids
-- ARGV: status, now, stale_after, id...
-- Returns the stuck ids.
local status = ARGV[1]
local now, stale_after = tonumber(ARGV[2]), tonumber(ARGV[3])
local stuck = {}
for i = 4, #ARGV do
  local id, key = ARGV[i], KEYS[FIRST_KEY + i - 4]
  local fields = redis.call('HMGET', key, 'status', 'updated_at', 'lease_until', 'recovered_at')
  if fields[1] == status and not redis.call('ZSCORE', SCHEDULED, id) then
    local last = tonumber(fields[2]) or 0
    if status == 'sending' then last = tonumber(fields[3]) or 0 end
    last = math.max(last, tonumber(fields[4]) or 0)
    if last < now - stale_after then
      redis.call('HSET', key, 'recovered_at', ARGV[2])
      stuck[#stuck + 1] = id
    end
  end
end
return stuck

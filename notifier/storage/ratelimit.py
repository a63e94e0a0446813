"""A token-bucket rate limiter kept in Redis, so every API process shares the same buckets."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from notifier.settings import RateLimit
from notifier.storage.keys import Keys
from notifier.storage.redis import map_redis_errors

__all__ = ["RateDecision", "RateLimiter"]

# One atomic step per request. The clock is Redis's own (TIME), so API processes on hosts
# with drifting clocks still agree on how many tokens a bucket holds.
# KEYS[1]: the bucket hash. ARGV: capacity, refill rate (tokens/second), cost.
# Returns {allowed (0|1), seconds until `cost` tokens are available, tokens left}.
BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
end
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(wait), tostring(tokens)}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    #: Seconds until the request would be allowed (0 when it is).
    retry_after: float
    remaining: int


class RateLimiter:
    """``limit`` requests per ``period`` seconds per identity, with bursts up to ``limit``."""

    def __init__(self, redis: aioredis.Redis, rate: RateLimit, *, prefix: str = "notifier"):
        self.rate = rate
        self.keys = Keys(prefix)
        self._script = redis.register_script(BUCKET_SCRIPT)

    async def hit(self, identity: str, *, cost: int = 1) -> RateDecision:
        """Take ``cost`` tokens from ``identity``'s bucket if it has them.

        Raises StoreUnavailable when Redis cannot be reached.
        """
        with map_redis_errors():
            reply = await self._script(
                keys=[self.keys.rate_limit(identity)],
                args=[self.rate.limit, repr(self.rate.per_second), cost],
            )
        allowed, wait, tokens = reply
        return RateDecision(
            allowed=int(allowed) == 1, retry_after=float(wait), remaining=int(float(tokens))
        )

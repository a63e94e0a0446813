"""A token-bucket rate limiter kept in Redis, so every API process shares the same buckets."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from notifier.settings import RateLimit
from notifier.storage import scripts
from notifier.storage.keys import Keys
from notifier.storage.redis import map_redis_errors

__all__ = ["RateDecision", "RateLimiter"]


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
        self._script = redis.register_script(scripts.RATE_LIMIT)

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

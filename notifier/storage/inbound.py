"""Inbound mail the bounce receiver could not apply, kept (bounded) for a person to read."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from notifier.storage.keys import Keys
from notifier.storage.redis import map_redis_errors

__all__ = ["InboundMailKeeper", "UnclassifiedMail"]

# Keep one unreadable inbound message, dropping the oldest beyond the bound.
# KEYS: id list, id -> JSON hash; ARGV: id, json, max
KEEP_UNCLASSIFIED = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local max = tonumber(ARGV[3])
while redis.call('LLEN', KEYS[1]) > max do
  local old = redis.call('RPOP', KEYS[1])
  redis.call('HDEL', KEYS[2], old)
end
return redis.call('LLEN', KEYS[1])
"""


@dataclass(frozen=True, slots=True)
class UnclassifiedMail:
    """Inbound mail the receiver could not classify, kept for a person to read."""

    id: str
    received_at: float
    mail_from: str
    rcpt_to: tuple[str, ...]
    problem: str
    raw: str

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "received_at": self.received_at,
                "mail_from": self.mail_from,
                "rcpt_to": list(self.rcpt_to),
                "problem": self.problem,
                "raw": self.raw,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> UnclassifiedMail:
        data = orjson.loads(raw)
        return cls(
            id=data["id"],
            received_at=data["received_at"],
            mail_from=data["mail_from"],
            rcpt_to=tuple(data["rcpt_to"]),
            problem=data["problem"],
            raw=data["raw"],
        )


class InboundMailKeeper:
    """Keeps, lists and shows unclassified inbound mail (a base of SuppressionStore)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._keep = redis.register_script(KEEP_UNCLASSIFIED)

    async def keep_unclassified(
        self,
        *,
        raw: bytes,
        mail_from: str,
        rcpt_to: Sequence[str],
        problem: str,
        limit: int,
        now: float | None = None,
    ) -> UnclassifiedMail:
        kept = UnclassifiedMail(
            id=uuid.uuid4().hex,
            received_at=time.time() if now is None else now,
            mail_from=mail_from,
            rcpt_to=tuple(rcpt_to),
            problem=problem,
            raw=raw.decode("utf-8", "replace"),
        )
        with map_redis_errors():
            await self._keep(
                keys=[self.keys.unclassified, self.keys.unclassified_raw],
                args=[kept.id, kept.as_json(), limit],
            )
        return kept

    async def unclassified(self, *, limit: int = 50, offset: int = 0) -> list[UnclassifiedMail]:
        """Kept messages, newest first."""
        with map_redis_errors():
            ids: Any = await self.redis.lrange(self.keys.unclassified, offset, offset + limit - 1)
            if not ids:
                return []
            rows: Any = await self.redis.hmget(self.keys.unclassified_raw, ids)
            return [UnclassifiedMail.from_json(row) for row in rows if row]

    async def unclassified_one(self, mail_id: str) -> UnclassifiedMail | None:
        with map_redis_errors():
            row: Any = await self.redis.hget(self.keys.unclassified_raw, mail_id)
            return UnclassifiedMail.from_json(row) if row else None

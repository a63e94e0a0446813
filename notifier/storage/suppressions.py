"""The suppression list, soft-bounce counting and bounces/complaints on records.

Addresses are keyed as SMTP compares them: the domain without case, the local part exactly.
An entry applies to every message (``category`` None) or to one category of messages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from notifier.compose.addresses import normalize_address
from notifier.storage.inbound import InboundMailKeeper, UnclassifiedMail
from notifier.storage.keys import Keys
from notifier.storage.paging import format_cursor, parse_cursor
from notifier.storage.redis import map_redis_errors

__all__ = [
    "REASONS",
    "FeedbackOutcome",
    "SuppressionEntry",
    "SuppressionPage",
    "SuppressionStore",
    "UnclassifiedMail",
    "check_category",
]

REASONS = ("hard_bounce", "complaint", "manual", "unsubscribe")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: How long an applied bounce or complaint is remembered, so its replay changes nothing.
SEEN_TTL = 30 * 86400

# Apply one bounce or complaint atomically: remember it (a replay is a no-op), append it to the
# notification's feedback list, count a soft bounce, and add a suppression entry the first time.
# KEYS: seen, feedback list, record, soft-bounce zset, entry hash, index
# ARGV: seen_ttl, event_json, kind (hard_bounce|soft_bounce|complaint|none), now, soft_window,
#       soft_limit, entry_id, entry_json, record_known (0|1)
APPLY_FEEDBACK = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) == false then
  return {'duplicate', 0, 0}
end
local now = tonumber(ARGV[4])
if ARGV[9] == '1' then
  local ttl = redis.call('TTL', KEYS[3])
  if ttl > 0 then
    redis.call('RPUSH', KEYS[2], ARGV[2])
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end
local kind = ARGV[3]
local soft = 0
local suppress = (kind == 'hard_bounce' or kind == 'complaint')
if kind == 'soft_bounce' then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[5]))
  redis.call('ZADD', KEYS[4], now, KEYS[1])
  redis.call('EXPIRE', KEYS[4], math.ceil(tonumber(ARGV[5])))
  soft = redis.call('ZCARD', KEYS[4])
  suppress = soft >= tonumber(ARGV[6])
end
if suppress and redis.call('EXISTS', KEYS[5]) == 0 then
  local flat = {}
  for k, v in pairs(cjson.decode(ARGV[8])) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call('HSET', KEYS[5], unpack(flat))
  redis.call('ZADD', KEYS[6], now, ARGV[7])
  if kind == 'soft_bounce' then redis.call('DEL', KEYS[4]) end
  return {'applied', 1, soft}
end
return {'applied', 0, soft}
"""


def check_category(category: str | None) -> str | None:
    """A valid category or None; raises ValueError naming the rule."""
    if category is None or category == "":
        return None
    if not _CATEGORY.match(category):
        raise ValueError("a category is 1-64 of a-z, 0-9, '_', '.', '-' (lowercase)")
    return category


def entry_id(address: str, category: str | None = None) -> str:
    normalized = normalize_address(address)
    return f"{normalized}|{category}" if category else normalized


@dataclass(frozen=True, slots=True)
class SuppressionEntry:
    """One address (or address + category) that mail is not sent to."""

    address: str
    reason: str
    source: str
    created: float
    category: str | None = None
    expires: float | None = None
    note: str = ""

    @property
    def id(self) -> str:
        return entry_id(self.address, self.category)

    def as_fields(self) -> dict[str, str]:
        return {
            "address": self.address,
            "category": self.category or "",
            "reason": self.reason,
            "source": self.source,
            "created": repr(self.created),
            "expires": repr(self.expires) if self.expires is not None else "",
            "note": self.note,
        }

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> SuppressionEntry:
        return cls(
            address=data["address"],
            category=data.get("category") or None,
            reason=data["reason"],
            source=data.get("source", ""),
            created=float(data["created"]),
            expires=float(data["expires"]) if data.get("expires") else None,
            note=data.get("note", ""),
        )


@dataclass(frozen=True, slots=True)
class SuppressionPage:
    entries: tuple[SuppressionEntry, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    """What applying one bounce or complaint did."""

    outcome: Literal["applied", "duplicate"]
    suppressed: bool = False
    soft_count: int = 0


class SuppressionStore(InboundMailKeeper):
    """The suppression list in Redis; every method raises StoreUnavailable when Redis is down."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "notifier") -> None:
        super().__init__(redis, Keys(prefix))
        self._apply = redis.register_script(APPLY_FEEDBACK)

    # Entries.

    async def put(self, entry: SuppressionEntry) -> bool:
        """Add or replace an entry; returns True when it is new."""
        with map_redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.exists(self.keys.suppression(entry.id))
                self._write(pipe, entry)
                replies = await pipe.execute()
            return not replies[0]

    async def put_many(self, entries: Sequence[SuppressionEntry]) -> int:
        """Add or replace entries in one atomic step; returns how many were new."""
        with map_redis_errors():
            if not entries:
                return 0
            async with self.redis.pipeline(transaction=True) as pipe:
                for entry in entries:
                    pipe.exists(self.keys.suppression(entry.id))
                for entry in entries:
                    self._write(pipe, entry)
                replies = await pipe.execute()
            return sum(1 for existed in replies[: len(entries)] if not existed)

    def _write(self, pipe: aioredis.client.Pipeline, entry: SuppressionEntry) -> None:
        """Queue on ``pipe`` the commands that store ``entry``, replacing any earlier one."""
        key = self.keys.suppression(entry.id)
        pipe.delete(key)
        pipe.hset(key, mapping=dict(entry.as_fields()))  # type: ignore[arg-type]
        pipe.zadd(self.keys.suppression_index, {entry.id: entry.created})
        if entry.expires is not None:
            pipe.expireat(key, int(entry.expires) + 1)
            pipe.zadd(self.keys.suppression_expiry, {entry.id: entry.expires})
        else:
            pipe.zrem(self.keys.suppression_expiry, entry.id)

    async def get(self, address: str, category: str | None = None) -> SuppressionEntry | None:
        found = await self.get_many([entry_id(address, category)])
        return found[0]

    async def get_many(self, ids: Sequence[str]) -> list[SuppressionEntry | None]:
        with map_redis_errors():
            now = time.time()
            async with self.redis.pipeline(transaction=False) as pipe:
                for one in ids:
                    pipe.hgetall(self.keys.suppression(one))
                rows: list[dict[str, str]] = await pipe.execute()
            entries: list[SuppressionEntry | None] = []
            for row in rows:
                entry = SuppressionEntry.from_hash(row) if row else None
                # Redis expires the hash a second late at most; the expiry itself is exact.
                if entry is not None and entry.expires is not None and entry.expires <= now:
                    entry = None
                entries.append(entry)
            return entries

    async def remove(self, address: str, category: str | None = None) -> bool:
        """Delete an entry; returns whether there was one."""
        with map_redis_errors():
            one = entry_id(address, category)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.suppression(one))
                pipe.zrem(self.keys.suppression_index, one)
                pipe.zrem(self.keys.suppression_expiry, one)
                pipe.delete(self.keys.soft_bounces(normalize_address(address)))
                replies = await pipe.execute()
            return bool(replies[0])

    async def matching(
        self, addresses: Iterable[str], *, category: str | None = None
    ) -> dict[str, SuppressionEntry]:
        """The entries that stop mail to each of ``addresses`` (by the address as given).

        An entry for the address alone applies to every category; one for the address and
        ``category`` only to that category.
        """
        wanted: list[tuple[str, str]] = []
        for address in addresses:
            try:
                wanted.append((address, entry_id(address)))
                if category:
                    wanted.append((address, entry_id(address, category)))
            except ValueError:
                continue
        if not wanted:
            return {}
        found = await self.get_many([one for _, one in wanted])
        result: dict[str, SuppressionEntry] = {}
        for (address, _), entry in zip(wanted, found, strict=True):
            if entry is not None and address not in result:
                result[address] = entry
        return result

    async def purge_expired(self, *, now: float | None = None) -> int:
        """Drop index entries whose expiry has passed (Redis already deleted their hashes)."""
        with map_redis_errors():
            now = time.time() if now is None else now
            expired: Any = await self.redis.zrangebyscore(self.keys.suppression_expiry, 0, now)
            if not expired:
                return 0
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.suppression_index, *expired)
                pipe.zrem(self.keys.suppression_expiry, *expired)
                for one in expired:
                    pipe.delete(self.keys.suppression(one))
                await pipe.execute()
            return len(expired)

    async def size(self) -> int:
        await self.purge_expired()
        with map_redis_errors():
            return int(await self.redis.zcard(self.keys.suppression_index))

    async def page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        reason: str | None = None,
        category: str | None = None,
        domain: str | None = None,
        source: str | None = None,
        scan_budget: int = 5000,
    ) -> SuppressionPage:
        """Entries newest first, filtered; ``cursor`` is the ``next_cursor`` of the last page.

        At most ``scan_budget`` index entries are looked at per call, so a rare filter answers
        a shorter page with a cursor rather than walking the whole list.
        """
        await self.purge_expired()
        max_score: str = "+inf"
        after: tuple[float, str] | None = None
        if cursor:
            max_score, score, last = parse_cursor(cursor)
            after = (score, last)
        want_domain = domain.lower() if domain else None
        found: list[SuppressionEntry] = []
        offset, scanned, last_seen = 0, 0, after
        exhausted = False
        while len(found) < limit and scanned < scan_budget:
            with map_redis_errors():
                batch: Any = await self.redis.zrevrangebyscore(
                    self.keys.suppression_index,
                    max_score,
                    "-inf",
                    start=offset,
                    num=200,
                    withscores=True,
                )
            if not batch:
                exhausted = True
                break
            offset += len(batch)
            batch = [
                (member, score)
                for member, score in batch
                # Equal scores come in descending member order; resume after the cursor.
                if not (after and score == after[0] and member >= after[1])
            ]
            entries = await self.get_many([member for member, _ in batch])
            for (member, score), entry in zip(batch, entries, strict=True):
                scanned += 1
                last_seen = (score, member)
                if entry is None:
                    continue
                if reason and entry.reason != reason:
                    continue
                if category is not None and (entry.category or "") != category:
                    continue
                if source and entry.source != source:
                    continue
                if want_domain and entry.address.rpartition("@")[2].lower() != want_domain:
                    continue
                found.append(entry)
                if len(found) == limit:
                    break
        next_cursor = None
        if not exhausted and last_seen is not None and last_seen != after:
            next_cursor = format_cursor(*last_seen)
        return SuppressionPage(entries=tuple(found), next_cursor=next_cursor)

    # Bounces and complaints.

    async def apply_feedback(
        self,
        *,
        dedupe_key: str,
        kind: str,
        event: Mapping[str, Any],
        notification_id: str | None,
        address: str | None,
        entry: SuppressionEntry | None,
        soft_window: float,
        soft_limit: int,
        now: float | None = None,
    ) -> FeedbackOutcome:
        """Record one bounce or complaint; a second call with the same ``dedupe_key`` is a no-op.

        ``entry`` is the suppression entry to add if this event suppresses the address (a hard
        bounce or complaint the first time, the ``soft_limit``-th soft bounce in the window).
        """
        now = time.time() if now is None else now
        normalized = normalize_address(address) if address else ""
        # Keys a call does not use still need a name: these are never written (see ARGV).
        unused = f"{self.keys.prefix}:unused"
        keys = [
            self.keys.feedback_seen(dedupe_key),
            self.keys.feedback(notification_id) if notification_id else unused,
            self.keys.record(notification_id) if notification_id else unused,
            self.keys.soft_bounces(normalized) if normalized else unused,
            self.keys.suppression(entry.id) if entry else unused,
            self.keys.suppression_index,
        ]
        args: list[Any] = [
            SEEN_TTL,
            orjson.dumps(dict(event)),
            kind if entry is not None else "none",
            repr(now),
            repr(soft_window),
            soft_limit,
            entry.id if entry else "",
            orjson.dumps(entry.as_fields()) if entry else b"{}",
            "1" if notification_id else "0",
        ]
        with map_redis_errors():
            reply = await self._apply(keys=keys, args=args)
        return FeedbackOutcome(
            outcome=reply[0], suppressed=bool(int(reply[1])), soft_count=int(reply[2])
        )

    async def feedback(self, notification_id: str) -> list[dict[str, Any]]:
        """The bounces and complaints recorded on a notification, oldest first."""
        with map_redis_errors():
            rows: Any = await self.redis.lrange(self.keys.feedback(notification_id), 0, -1)
            return [orjson.loads(row) for row in rows]

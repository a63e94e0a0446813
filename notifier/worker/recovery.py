"""Recovery: requeue notifications whose task message was lost, so none stays pending forever.

A task message can vanish while its record says there is work to do: a hard time limit makes
Celery acknowledge a task that never recorded its outcome (the record stays ``sending``), and
a Redis stop between kombu's BRPOP and its reply drops one message (the record stays
``queued``). The sweep finds records with no progress for ``RECOVERY_AFTER`` seconds and no
pending schedule entry, and queues a fresh delivery message for each. A spare message is
harmless: the claim lets only one delivery send, and a ``sent`` record is never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from notifier.intake import deliver_message
from notifier.storage.store import NotificationStore

__all__ = ["RecoverySweep"]

# Of the ids in one status index slice, return those stuck for longer than ``stale_after``
# and mark them recovered, so each is requeued at most once per ``stale_after``.
# KEYS: none (derived from the prefix). ARGV: prefix, status, now, stale_after, offset, count
_FIND_STUCK = """
local p, status = ARGV[1], ARGV[2]
local now, stale_after = tonumber(ARGV[3]), tonumber(ARGV[4])
local index = p .. ':status:' .. status
local ids = redis.call('ZRANGEBYSCORE', index, '-inf', now - stale_after,
                       'LIMIT', tonumber(ARGV[5]), tonumber(ARGV[6]))
local stuck = {}
for _, id in ipairs(ids) do
  local key = p .. ':n:' .. id
  local fields = redis.call('HMGET', key, 'status', 'updated_at', 'lease_until', 'recovered_at')
  if fields[1] == status and not redis.call('ZSCORE', p .. ':scheduled', id) then
    local last = tonumber(fields[2]) or 0
    if status == 'sending' then last = tonumber(fields[3]) or 0 end
    last = math.max(last, tonumber(fields[4]) or 0)
    if last < now - stale_after then
      redis.call('HSET', key, 'recovered_at', ARGV[3])
      stuck[#stuck + 1] = id
    end
  end
end
return {#ids, stuck}
"""

#: Statuses whose record says a delivery should happen without any schedule entry.
STUCK_STATUSES = ("queued", "retrying", "sending")


@dataclass
class RecoverySweep:
    """Walks the pending status indexes a slice at a time, across calls."""

    store: NotificationStore
    stale_after: float
    batch: int = 200
    _offsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._find = self.store.redis.register_script(_FIND_STUCK)

    async def run(self, *, now: float) -> list[str]:
        """Requeue stuck notifications; returns their ids."""
        requeued: list[str] = []
        for status in STUCK_STATUSES:
            offset = self._offsets.get(status, 0)
            scanned, stuck = await self.store.call(
                lambda status=status, offset=offset: self._find(  # type: ignore[misc]
                    args=[
                        self.store.prefix,
                        status,
                        repr(now),
                        repr(self.stale_after),
                        offset,
                        self.batch,
                    ]
                )
            )
            # Start over once the end of the index is reached; else continue after this slice.
            self._offsets[status] = offset + int(scanned) if int(scanned) == self.batch else 0
            if stuck:
                await self._queue(list(stuck))
                requeued.extend(stuck)
        return requeued

    async def _queue(self, ids: list[str]) -> None:
        async def push() -> None:
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for notification_id in ids:
                    pipe.lpush(self.store.queue, deliver_message(notification_id))
                await pipe.execute()

        await self.store.call(push)

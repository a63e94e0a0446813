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

#: Statuses whose record says a delivery should happen without any schedule entry.
STUCK_STATUSES = ("queued", "retrying", "sending")


@dataclass
class RecoverySweep:
    """Walks the pending status indexes a slice at a time, across calls."""

    store: NotificationStore
    stale_after: float
    batch: int = 200
    _offsets: dict[str, int] = field(default_factory=dict)

    async def run(self, *, now: float) -> list[str]:
        """Requeue stuck notifications; returns their ids."""
        requeued: list[str] = []
        for status in STUCK_STATUSES:
            offset = self._offsets.get(status, 0)
            scanned, stuck = await self.store.find_stuck(
                status, now=now, stale_after=self.stale_after, offset=offset, count=self.batch
            )
            # Start over once the end of the index is reached; else continue after this slice.
            self._offsets[status] = offset + scanned if scanned == self.batch else 0
            if stuck:
                await self._queue(stuck)
                requeued.extend(stuck)
        return requeued

    async def _queue(self, ids: list[str]) -> None:
        # Onto the Redis queue, or published to RabbitMQ when the store has a sink (BROKER_URL).
        await self.store.enqueue(*map(deliver_message, ids))

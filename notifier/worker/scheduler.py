"""The dispatcher: queues scheduled notifications and retries when they fall due."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

from notifier.storage.loop import RedisLoopThread
from notifier.storage.sink import message_sink
from notifier.storage.store import NotificationStore
from notifier.worker.recovery import RecoverySweep

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

CLEANUP_INTERVAL = 600.0


class Dispatcher(RedisLoopThread):
    """Runs in a thread of every worker's main process.

    Each tick moves due entries of the schedule onto the queue in one Lua script, so several
    workers can tick at once without a lock and without queueing anything twice. Now and then
    it also forgets expired index entries and requeues notifications whose task message was
    lost (notifier.worker.recovery).
    """

    thread_name = "notifier-dispatcher"
    label = "dispatcher"
    log = log

    async def setup(self, redis: aioredis.Redis) -> None:
        settings = self.settings
        # RabbitMQ (BROKER_URL): due messages and recovered ones are published through it.
        self._store = NotificationStore(
            redis,
            prefix=settings.redis_prefix,
            retention_seconds=settings.record_retention_seconds,
            sink=message_sink(settings),
        )
        self._sweep = RecoverySweep(self._store, stale_after=settings.recovery_after)
        # Sweep a few times per RECOVERY_AFTER, but not more often than every 2 s.
        self._sweep_interval = max(2.0, min(60.0, settings.recovery_after / 4))
        self._next_cleanup = self._next_sweep = time.monotonic()

    async def tick(self) -> None:
        store = self._store
        queued = await store.dispatch_due()
        if queued:
            log.info("dispatcher queued %d due notification(s)", queued)
        if time.monotonic() >= self._next_cleanup:
            removed = await store.cleanup()
            if removed:
                log.info("cleanup removed %d expired index entries", removed)
            self._next_cleanup = time.monotonic() + CLEANUP_INTERVAL
        if time.monotonic() >= self._next_sweep:
            recovered = await self._sweep.run(now=time.time())
            if recovered:
                log.warning(
                    "requeued %d notification(s) whose task message was lost: %s",
                    len(recovered),
                    ", ".join(recovered[:10]),
                )
            self._next_sweep = time.monotonic() + self._sweep_interval

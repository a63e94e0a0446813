"""The dispatcher: queues scheduled notifications and retries when they fall due."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from notifier.errors import StoreUnavailable
from notifier.settings import Settings
from notifier.storage.connection import connect_async
from notifier.storage.store import NotificationStore
from notifier.worker.recovery import RecoverySweep

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

CLEANUP_INTERVAL = 600.0


class Dispatcher:
    """Runs in a thread of every worker's main process.

    Each tick moves due entries of the schedule onto the queue in one Lua script, so several
    workers can tick at once without a lock and without queueing anything twice. Now and then
    it also forgets expired index entries and requeues notifications whose task message was
    lost (notifier.worker.recovery).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifier-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        settings = self.settings
        redis = connect_async(settings)
        store = NotificationStore(
            redis, prefix=settings.redis_prefix, retention_seconds=settings.record_retention_seconds
        )
        sweep = RecoverySweep(store, stale_after=settings.recovery_after)
        # Sweep a few times per RECOVERY_AFTER, but not more often than every 2 s.
        sweep_interval = max(2.0, min(60.0, settings.recovery_after / 4))
        next_cleanup = next_sweep = time.monotonic()
        unavailable = False
        try:
            while not self._stop.is_set():
                try:
                    queued = await store.dispatch_due()
                    if queued:
                        log.info("dispatcher queued %d due notification(s)", queued)
                    if time.monotonic() >= next_cleanup:
                        removed = await store.cleanup()
                        if removed:
                            log.info("cleanup removed %d expired index entries", removed)
                        next_cleanup = time.monotonic() + CLEANUP_INTERVAL
                    if time.monotonic() >= next_sweep:
                        recovered = await sweep.run(now=time.time())
                        if recovered:
                            log.warning(
                                "requeued %d notification(s) whose task message was lost: %s",
                                len(recovered),
                                ", ".join(recovered[:10]),
                            )
                        next_sweep = time.monotonic() + sweep_interval
                    if unavailable:
                        log.info("dispatcher reconnected to Redis")
                        unavailable = False
                except StoreUnavailable as exc:
                    if not unavailable:
                        log.warning("dispatcher cannot reach Redis: %s", exc)
                        unavailable = True
                await asyncio.sleep(settings.scheduler_interval)
        finally:
            await redis.aclose()

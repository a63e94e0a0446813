"""The webhook pump: fans events out to endpoints and queues deliveries when they fall due.

It runs in a thread of every worker's main process, beside the mail dispatcher. Each step is
one Lua script that checks its input again, so several workers pump at once without a lock
and without scheduling or queueing anything twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from celery import bootsteps

from notifier.settings import Settings, get_settings
from notifier.storage.loop import RedisLoopThread
from notifier.storage.sink import message_sink
from notifier.webhooks.metrics import WEBHOOK_BACKLOG
from notifier.webhooks.store import FANOUT_BATCH, WebhookStore

__all__ = ["WebhookPump", "WebhookPumpStep", "pump_once"]

log = logging.getLogger(__name__)

#: Seconds between pump ticks at most (SCHEDULER_INTERVAL when shorter).
TICK = 0.2
BACKLOG_INTERVAL = 5.0
CLEANUP_INTERVAL = 600.0


async def pump_once(
    store: WebhookStore, *, lease_seconds: float = 3600.0, now: float | None = None
) -> tuple[int, int]:
    """Fan out what waits in the inbox, then queue due deliveries; returns both counts."""
    scheduled = 0
    endpoints = None
    for _ in range(50):  # at most 10,000 events a tick; the rest next tick
        events = await store.read_inbox(FANOUT_BATCH)
        if not events:
            break
        if endpoints is None:
            endpoints = await store.list_endpoints()
        result = await store.fan_out(events, endpoints, now=now)
        if result > 0:
            scheduled += result
        if len(events) < FANOUT_BATCH and result >= 0:
            break
    queued = await store.dispatch_due(lease_seconds=lease_seconds, now=now)
    return scheduled, queued


class WebhookPump(RedisLoopThread):
    """Runs :func:`pump_once` every tick in its own thread and event loop."""

    thread_name = "notifier-webhooks"
    label = "webhook pump"
    log = log
    survive_errors = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._gauged: set[str] = set()

    @property
    def interval(self) -> float:
        return min(TICK, self.settings.scheduler_interval)

    async def setup(self, redis: aioredis.Redis) -> None:
        settings = self.settings
        self._store = WebhookStore(
            redis,
            prefix=settings.redis_prefix,
            retention_seconds=settings.record_retention_seconds,
            sink=message_sink(settings),  # RabbitMQ (BROKER_URL): deliveries are published
        )
        # A queued delivery whose task message vanished is queued again after this long; the
        # broker's own redelivery of an unacknowledged task comes first.
        self._lease = settings.broker_visibility_timeout + settings.task_time_limit + 60.0
        self._next_backlog = self._next_cleanup = time.monotonic()

    async def tick(self) -> None:
        store = self._store
        scheduled, queued = await pump_once(store, lease_seconds=self._lease)
        if scheduled or queued:
            log.debug("webhooks: %d scheduled, %d queued", scheduled, queued)
        if time.monotonic() >= self._next_backlog:
            await self._gauge_backlog(store)
            self._next_backlog = time.monotonic() + BACKLOG_INTERVAL
        if time.monotonic() >= self._next_cleanup:
            cutoff = time.time() - self.settings.record_retention_seconds
            for endpoint in await store.list_endpoints():
                await store.forget_older_than(endpoint.id, cutoff)
            self._next_cleanup = time.monotonic() + CLEANUP_INTERVAL

    async def _gauge_backlog(self, store: WebhookStore) -> None:
        endpoints = [endpoint.id for endpoint in await store.list_endpoints()]
        counts = await store.backlog(endpoints) if endpoints else {}
        for endpoint_id, count in counts.items():
            WEBHOOK_BACKLOG.labels(endpoint=endpoint_id).set(count)
        for gone in self._gauged - counts.keys():
            WEBHOOK_BACKLOG.remove(gone)
        self._gauged = set(counts)


class WebhookPumpStep(bootsteps.StartStopStep):
    """Runs the webhook pump beside the consumer in the worker's main process."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.pump: WebhookPump | None = None

    def start(self, parent: Any) -> None:
        self.pump = WebhookPump(get_settings())
        self.pump.start()

    def stop(self, parent: Any) -> None:
        if self.pump is not None:
            self.pump.stop()

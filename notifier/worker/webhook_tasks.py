"""The ``notifier.webhooks.deliver`` task, on the ``webhooks`` queue: thin, over deliver_webhook."""

from __future__ import annotations

import logging
import os
import threading
import time

import httpx
from celery.exceptions import Reject

from notifier.errors import StoreUnavailable
from notifier.messages import WEBHOOK_DELIVER_TASK
from notifier.webhooks.delivery import deliver_webhook, new_http_client
from notifier.webhooks.store import WebhookStore
from notifier.worker.app import app
from notifier.worker.runtime import WorkerRuntime, get_runtime

__all__ = ["deliver_webhook_task"]

log = logging.getLogger(__name__)

#: Seconds a delivery waits on the schedule when its process has no free webhook slot.
BUSY_DELAY = 0.5


class _Webhooks:
    """What a worker process reuses for webhooks: the store, one HTTP client, the slots."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.pid = os.getpid()
        self.store = WebhookStore(
            runtime.redis,
            prefix=runtime.settings.redis_prefix,
            retention_seconds=runtime.settings.record_retention_seconds,
        )
        self.client: httpx.AsyncClient = new_http_client()
        # Webhook tasks share the process's task threads with mail; capping how many may wait
        # on receivers at once keeps slow receivers from taking the threads mail needs.
        self.slots = threading.BoundedSemaphore(runtime.settings.webhook_concurrency_per_process)


_webhooks: _Webhooks | None = None
_lock = threading.Lock()


def _get(runtime: WorkerRuntime) -> _Webhooks:
    global _webhooks
    with _lock:
        if _webhooks is None or _webhooks.pid != os.getpid():
            _webhooks = _Webhooks(runtime)
        return _webhooks


@app.task(name=WEBHOOK_DELIVER_TASK, ignore_result=True)
def deliver_webhook_task(endpoint_id: str, message_id: str) -> str:
    """Deliver one webhook message to one endpoint (queued by the webhook pump; internal)."""
    if not isinstance(endpoint_id, str) or not isinstance(message_id, str):
        raise TypeError("notifier.webhooks.deliver takes an endpoint id and a message id")
    runtime = get_runtime()
    hooks = _get(runtime)
    try:
        if not hooks.slots.acquire(blocking=False):
            # Busy with slow receivers: back on the schedule, not an attempt.
            runtime.run(hooks.store.schedule(endpoint_id, message_id, due=time.time() + BUSY_DELAY))
            return "busy"
        try:
            return runtime.run(
                deliver_webhook(
                    store=hooks.store,
                    client=hooks.client,
                    settings=runtime.settings,
                    endpoint_id=endpoint_id,
                    message_id=message_id,
                )
            )
        finally:
            hooks.slots.release()
    except StoreUnavailable as exc:
        # As for mail: give the message back rather than lose the delivery.
        log.warning("Redis is unreachable, giving the webhook task back: %s", exc)
        time.sleep(1.0)
        raise Reject(str(exc), requeue=True) from exc

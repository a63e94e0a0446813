"""The per-process worker runtime: one event loop thread, one Redis client, one SMTP pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery.exceptions import TimeLimitExceeded

from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import sender_address
from notifier.delivery.deliver import DeliveryContext
from notifier.delivery.dkim import load_signer
from notifier.delivery.pool import SMTPPool
from notifier.settings import Settings, get_settings
from notifier.startup import load_event_rules
from notifier.storage.connection import connect_async
from notifier.storage.sink import message_sink
from notifier.storage.store import NotificationStore

__all__ = ["WorkerRuntime", "close_runtime", "get_runtime"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long closing waits for the loop to QUIT the SMTP connections and release Redis.
CLOSE_TIMEOUT_SECONDS = 15.0


class WorkerRuntime:
    """Everything a worker process reuses across tasks.

    Created after the fork (Celery's ``worker_process_init``), so no socket or event loop is
    shared between processes. The event loop runs in its own thread; tasks, which run in the
    pool's threads (:class:`~notifier.worker.pool.ConcurrentPool`), hand it their coroutines
    with ``run`` and wait, so many sends are in flight on the one loop and share its Redis
    client and its pool of ``SMTP_CONNECTIONS_PER_PROCESS`` SMTP connections.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name="notifier-event-loop", daemon=True
        )
        self._thread.start()
        self.redis = connect_async(settings)
        # RabbitMQ (BROKER_URL): what a task queues itself (an event's notifications, a busy
        # lease's deferral, a chunk's leftovers) is published there, not pushed to a Redis list.
        self.sink = message_sink(settings)
        self.store = NotificationStore(
            self.redis,
            prefix=settings.redis_prefix,
            retention_seconds=settings.record_retention_seconds,
            sink=self.sink,
        )
        self.transport = SMTPPool.from_settings(settings)
        self.renderer = TemplateRenderer(
            settings.templates_dir, default_locale=settings.default_locale
        )
        self.rules = load_event_rules(settings, self.renderer)
        self.context = DeliveryContext(
            settings=settings,
            store=self.store,
            transport=self.transport,
            renderer=self.renderer,
            sender=sender_address(settings),
            signer=load_signer(settings),
        )
        #: A ``notifier.deliver_batch`` chunk delivers this many ids at once, all through the
        #: one SMTP pool; ``batch_slots`` bounds the deliveries of all chunks in flight in this
        #: process together to the same number (bound to the loop on first use).
        self.contexts = [self.context] * settings.smtp_connections_per_process
        self.batch_slots = asyncio.Semaphore(settings.smtp_connections_per_process)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it, at most ``TASK_TIME_LIMIT`` seconds.

        Many threads call this at once. A coroutine past the limit is cancelled (its SMTP
        connection dropped, so nothing completes later) and TimeLimitExceeded raised: with
        many tasks per process the limit cannot kill the process as prefork does.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("WorkerRuntime.run called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        limit = self.settings.task_time_limit
        try:
            # result() waits on the future's own condition: cheaper than futures.wait(),
            # which builds a waiter per call (measured: ~3 % of a pool process's CPU).
            return future.result(timeout=limit)
        except TimeoutError:
            if future.done():  # the coroutine's own TimeoutError, or it just finished
                return future.result()
        future.cancel()
        concurrent.futures.wait([future], timeout=CLOSE_TIMEOUT_SECONDS)
        raise TimeLimitExceeded(limit)

    def close(self) -> None:
        """QUIT every SMTP connection and release Redis; called on worker process shutdown."""
        if self.loop.is_closed():
            return
        try:
            self.run_briefly(self.transport.close())
            self.run_briefly(self.redis.aclose())
            if self.sink is not None:
                self.sink.close()
        except Exception:
            log.warning("error while closing the worker runtime", exc_info=True)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CLOSE_TIMEOUT_SECONDS)
            if not self._thread.is_alive():
                self.loop.close()

    def run_briefly(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=CLOSE_TIMEOUT_SECONDS)


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    global _runtime_lock
    _runtime_lock = threading.Lock()


# A fork while another thread held the lock would leave it held in the child for ever.
os.register_at_fork(after_in_child=_reset_lock_in_child)


def get_runtime() -> WorkerRuntime:
    """This process's runtime, created on first use (and again in a forked child)."""
    global _runtime
    runtime = _runtime
    if runtime is not None and runtime.pid == os.getpid():
        return runtime
    with _runtime_lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = WorkerRuntime(get_settings())
        return _runtime


def close_runtime() -> None:
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.close()
    _runtime = None

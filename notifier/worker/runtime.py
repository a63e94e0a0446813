"""The per-process worker runtime: one event loop, one Redis client, one SMTP connection."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import sender_address
from notifier.delivery.deliver import DeliveryContext
from notifier.delivery.transport import SMTPTransport
from notifier.settings import Settings, get_settings
from notifier.startup import load_event_rules
from notifier.storage.connection import connect_async
from notifier.storage.store import NotificationStore

__all__ = ["WorkerRuntime", "close_runtime", "get_runtime"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkerRuntime:
    """Everything a worker process reuses across tasks.

    Created after the fork (Celery's ``worker_process_init``), so no socket or event loop is
    shared between processes. Tasks run their coroutines on ``loop`` with ``run``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.redis = connect_async(settings)
        self.store = NotificationStore(
            self.redis,
            prefix=settings.redis_prefix,
            retention_seconds=settings.record_retention_seconds,
        )
        self.transport = SMTPTransport.from_settings(settings)
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
        )
        #: One delivery context per SMTP connection (SMTP_CONNECTIONS_PER_PROCESS); a
        #: ``notifier.deliver_batch`` chunk sends over all of them at once.
        self.contexts = [self.context] + [
            dataclasses.replace(self.context, transport=SMTPTransport.from_settings(settings))
            for _ in range(settings.smtp_connections_per_process - 1)
        ]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """QUIT the SMTP connection and release Redis; called on worker process shutdown."""
        if self.loop.is_closed():
            return
        try:
            for context in self.contexts:
                self.run(context.transport.close())
            self.run(self.redis.aclose())
        except Exception:
            log.warning("error while closing the worker runtime", exc_info=True)
        finally:
            self.loop.close()


_runtime: WorkerRuntime | None = None


def get_runtime() -> WorkerRuntime:
    """This process's runtime, created on first use (and again in a forked child)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = WorkerRuntime(get_settings())
    return _runtime


def close_runtime() -> None:
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.close()
    _runtime = None

"""The Celery application: configuration for at-least-once delivery, worker hooks."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery, bootsteps
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from kombu import Exchange, Queue

from notifier.errors import ConfigurationError
from notifier.messages import DEFAULT_QUEUE, WEBHOOK_DELIVER_TASK, WEBHOOKS_QUEUE
from notifier.settings import Settings, get_settings
from notifier.storage.connection import (
    celery_redis_config,
    check_redis_config,
    sentinel_transport_options,
)
from notifier.storage.sink import amqp_broker_config, check_broker_config
from notifier.worker.broker_transport import RedisTransport  # re-exported (older imports)
from notifier.worker.result_backend import backend_url

__all__ = ["RedisTransport", "amqp_broker_config", "app", "create_celery_app"]

log = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours."""
    # The atomic-fetch transports: redis:// and rediss://, or sentinel:// (REDIS_SENTINELS).
    name = "SentinelTransport" if settings.redis_sentinels else "RedisTransport"
    transport = {"broker_transport": f"notifier.worker.broker_transport:{name}"}
    return {
        **transport,
        # broker_url, result_backend (sentinel:// under REDIS_SENTINELS), TLS options.
        **celery_redis_config(settings),
        # The same URL, through a backend that checks "never overwrite a SUCCESS" and writes
        # in one Lua round trip (Celery's reads the stored result first).
        "result_backend": backend_url(celery_redis_config(settings)["result_backend"]),
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "timezone": "Europe/Moscow",
        "enable_utc": True,
        # A STARTED write per task would double the result-backend traffic; the record's
        # "sending" status says the same (the API maps it to STARTED).
        "task_track_started": False,
        "result_expires": 86400,
        # At-least-once: acknowledge after the task ran, give the message back when the
        # process running it dies. Each pool process runs SENDS_IN_FLIGHT_PER_PROCESS tasks at
        # once (notifier.worker.pool), so that many unacked messages per process; -c N keeps
        # meaning N processes.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_pool": "notifier.worker.pool:ConcurrentPool",
        "worker_prefetch_multiplier": settings.sends_in_flight_per_process,
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            # kombu looks for messages whose visibility timeout ran out only on every 10th
            # 10-second tick by default (up to 100 s late); look on every tick, and tick faster
            # when the timeout is short, so a killed worker's messages come back soon after
            # BROKER_VISIBILITY_TIMEOUT as documented.
            "unacked_restore_throttle": 1,
            "unacked_restore_interval": min(10, max(1, settings.broker_visibility_timeout // 4)),
            **sentinel_transport_options(settings),
        },
        "result_backend_transport_options": {
            "retry_policy": {"timeout": 5.0},
            **sentinel_transport_options(settings),
        },
        "task_time_limit": settings.task_time_limit,
        "task_default_queue": DEFAULT_QUEUE,
        # A worker consumes mail and webhooks unless started with -Q: webhooks have their own
        # queue so a slow receiver never sits in front of mail.
        # Each as Celery declares a default queue: a direct exchange of the same name.
        "task_queues": tuple(
            Queue(queue, Exchange(queue), routing_key=queue)
            for queue in (DEFAULT_QUEUE, WEBHOOKS_QUEUE)
        ),
        "task_routes": {WEBHOOK_DELIVER_TASK: {"queue": WEBHOOKS_QUEUE}},
        "broker_connection_retry_on_startup": True,
        # Task events (WORKER_EVENTS, off by default: they cost the main process CPU per
        # task). Flower turns them on in the workers it watches (enable_events) either way.
        "worker_send_task_events": settings.worker_events,
        "task_send_sent_event": settings.worker_events,
        "worker_hijack_root_logger": True,
        **(amqp_broker_config(settings) if settings.uses_amqp else {}),
    }


class StartupCheck(bootsteps.Step):
    """Refuse to start a worker whose templates or event rules are broken."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        from notifier.startup import check_worker_config

        try:
            check_worker_config(get_settings())
            check_redis_config(get_settings())  # an untrusted certificate, a wrong password
            check_broker_config(get_settings())  # the same for RabbitMQ (BROKER_URL)
        except ConfigurationError as exc:
            print(f"notifier: cannot start the worker: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


class DispatcherStep(bootsteps.StartStopStep):
    """Runs the scheduled-send dispatcher beside the consumer in the worker's main process."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.dispatcher: Any = None

    def start(self, parent: Any) -> None:
        from notifier.worker.scheduler import Dispatcher

        self.dispatcher = Dispatcher(get_settings())
        self.dispatcher.start()

    def stop(self, parent: Any) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()


class MetricsStep(bootsteps.StartStopStep):
    """Serves the worker's Prometheus metrics (all its processes): WORKER_METRICS_PORT."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.server: Any = None

    def start(self, parent: Any) -> None:
        settings = get_settings()
        if settings.worker_metrics_port:
            from notifier.observability.metrics import start_metrics_server

            self.server = start_metrics_server(
                settings.worker_metrics_port, host=settings.worker_metrics_host
            )

    def stop(self, parent: Any) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def create_celery_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    from notifier.webhooks.pump import WebhookPumpStep

    celery = Celery("notifier", include=["notifier.worker.tasks", "notifier.worker.webhook_tasks"])
    celery.conf.update(celery_config(settings))
    celery.steps["worker"].add(StartupCheck)
    celery.steps["worker"].add(DispatcherStep)
    celery.steps["worker"].add(WebhookPumpStep)
    celery.steps["worker"].add(MetricsStep)
    return celery


@setup_logging.connect
def _setup_logging(loglevel: Any = None, logfile: Any = None, **_: Any) -> None:
    # Connected, so Celery leaves logging to us: our format (LOG_FORMAT) and filters.
    from notifier.observability.logs import configure_logging

    configure_logging(get_settings(), level=loglevel or None, logfile=logfile or None)


@worker_init.connect
def _init_worker(**_: Any) -> None:
    # In the main process, before the pool forks: children must write multiprocess metrics.
    if get_settings().worker_metrics_port:
        from notifier.observability.metrics import enable_multiprocess

        enable_multiprocess()


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    # After the fork: give this process its own event loop, Redis client and SMTP connection.
    import gc

    from notifier.worker.runtime import get_runtime

    get_runtime()
    # Templates, settings and the Celery app live as long as the process: keep them out of
    # the full GC passes that would otherwise walk them between tasks.
    gc.freeze()


@worker_process_shutdown.connect
def _forget_process_metrics(pid: int | None = None, **_: Any) -> None:
    from notifier.observability.metrics import mark_process_dead

    mark_process_dead(pid)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _close_process(**_: Any) -> None:
    from notifier.worker.runtime import close_runtime

    close_runtime()


app = create_celery_app()

"""Prometheus metrics: counters and histograms updated by delivery and intake, queue gauges.

Counters and histograms live in the process that counts them. Celery's prefork workers run
tasks in child processes, so a worker that serves metrics (``WORKER_METRICS_PORT``) uses
prometheus_client's multiprocess mode: each process writes its values to files under
``PROMETHEUS_MULTIPROC_DIR`` and the worker's main process serves their sum.

Every metric here has labels, so its values are created lazily, in the process that first
uses them: after the fork, and after ``enable_multiprocess`` had its say.

Queue depth, scheduled count and dead-letter size are gauges read from Redis when scraped
(``QueueCollector``), on the API's ``/metrics`` (api/routes/metrics.py); a worker does not
serve them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from notifier.errors import StoreUnavailable

if TYPE_CHECKING:
    from notifier.storage.store import NotificationStore

__all__ = [
    "ACCEPTED",
    "CONTENT_TYPE_LATEST",
    "DELIVERY_LATENCY",
    "EVENTS_IGNORED",
    "FAILED",
    "RETRIED",
    "SENT",
    "SMTP_DURATION",
    "SMTP_REPLIES",
    "QueueCollector",
    "QueueSnapshot",
    "count_accepted",
    "count_smtp_reply",
    "enable_multiprocess",
    "mark_process_dead",
    "read_queue_snapshot",
    "render_metrics",
    "start_metrics_server",
    "template_label",
]

log = logging.getLogger(__name__)

#: Reason classes for failed and retried notifications (never free text).
REASONS = ("transient", "permanent", "invalid")

ACCEPTED = Counter(
    "notifier_notifications_accepted",
    "Notifications accepted for delivery (API, Celery intake, events).",
    ["template", "source"],
)
SENT = Counter(
    "notifier_notifications_sent", "Notifications delivered to the SMTP server.", ["template"]
)
FAILED = Counter(
    "notifier_notifications_failed",
    "Notifications that ended failed (dead letters), by reason class.",
    ["template", "reason"],
)
RETRIED = Counter(
    "notifier_notifications_retried",
    "Delivery attempts that failed transiently and were scheduled again.",
    ["template", "reason"],
)
SMTP_REPLIES = Counter(
    "notifier_smtp_replies",
    "Final SMTP reply codes per attempt and per refused recipient ('none': no reply, e.g. "
    "connection refused or timeout).",
    ["code"],
)
EVENTS_IGNORED = Counter(
    "notifier_events_ignored",
    "Events whose type has no routing rule, by intake (celery or api).",
    ["via"],
)
DELIVERY_LATENCY = Histogram(
    "notifier_delivery_latency_seconds",
    "From acceptance (the record's created_at) to the SMTP server's 250.",
    ["template"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
SMTP_DURATION = Histogram(
    "notifier_smtp_send_seconds",
    "Time spent in one SMTP exchange (connect if needed, MAIL, RCPT, DATA), by outcome.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def template_label(name: str | None, known: Callable[[str], bool] | None = None) -> str:
    """The ``template`` label: ``raw`` for inline content, ``unknown`` for names not shipped.

    A publisher's typo must not create a new time series.
    """
    if not name:
        return "raw"
    if known is not None and not known(name):
        return "unknown"
    return name


def count_accepted(template: str | None, source: str) -> None:
    ACCEPTED.labels(template=template_label(template), source=source or "unknown").inc()


def count_smtp_reply(code: int | None) -> None:
    SMTP_REPLIES.labels(code=str(code) if code else "none").inc()


# Multiprocess mode (workers).


def enable_multiprocess(directory: str | None = None) -> Path:
    """Switch this process (before it forks) to multiprocess metrics; returns the directory.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` when set, ``directory`` otherwise, else a new temporary
    directory; it is emptied, since files left by a previous run would be summed in.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or directory
    if not path:
        path = tempfile.mkdtemp(prefix="notifier-metrics-")
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(target)
    # prometheus_client picks the value class when first imported; a worker started without
    # the variable set switches here. Our metrics all have labels, so no value exists yet.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return target


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def mark_process_dead(pid: int | None = None) -> None:
    """Called when a worker child exits; drops its live-gauge files."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


def _multiprocess_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@dataclass
class MetricsServer:
    """The worker's metrics HTTP server (prometheus_client's, in a daemon thread)."""

    port: int
    server: Any
    thread: threading.Thread
    directory: Path | None = None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_metrics_server(port: int, *, host: str = "0.0.0.0") -> MetricsServer:
    """Serve this worker's metrics (all its processes, summed) on ``host:port``."""
    registry = _multiprocess_registry() if multiprocess_enabled() else REGISTRY
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("worker metrics on http://%s:%d/metrics", host, server.server_port)
    return MetricsServer(port=server.server_port, server=server, thread=thread)


# Queue gauges (API).


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """What Redis says right now; ``up`` is False when it could not be read."""

    up: bool
    queue_depth: int = 0
    scheduled: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def dead_letters(self) -> int:
        return self.counts.get("failed", 0)


async def read_queue_snapshot(store: NotificationStore) -> QueueSnapshot:
    """Queue depth, schedule size and record counts by status, read from Redis."""
    try:
        return QueueSnapshot(
            up=True,
            queue_depth=await store.queue_length(),
            scheduled=await store.scheduled_count(),
            counts=await store.counts(),
        )
    except StoreUnavailable:
        return QueueSnapshot(up=False)


class QueueCollector(Collector):
    """Gauges from a QueueSnapshot taken for this scrape."""

    def __init__(self, snapshot: QueueSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield GaugeMetricFamily(
            "notifier_redis_up", "1 when Redis answered this scrape, else 0.", value=int(snap.up)
        )
        if not snap.up:
            return
        yield GaugeMetricFamily(
            "notifier_queue_depth",
            "Task messages waiting in the Celery queue (not yet taken by a worker).",
            value=snap.queue_depth,
        )
        yield GaugeMetricFamily(
            "notifier_scheduled_notifications",
            "Entries on the schedule: future sends and retries waiting for their time.",
            value=snap.scheduled,
        )
        yield GaugeMetricFamily(
            "notifier_dead_letters",
            "Notifications in the failed (dead-letter) list, within record retention.",
            value=snap.dead_letters,
        )
        by_status = GaugeMetricFamily(
            "notifier_notifications",
            "Notification records by status, within record retention.",
            labels=["status"],
        )
        for status, count in snap.counts.items():
            by_status.add_metric([status], count)
        yield by_status


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def render_metrics(snapshot: QueueSnapshot | None = None) -> bytes:
    """This process's metrics (all processes' in multiprocess mode) plus the queue gauges."""
    registry = CollectorRegistry()
    if multiprocess_enabled():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    if snapshot is not None:
        registry.register(QueueCollector(snapshot))
    return generate_latest(registry)

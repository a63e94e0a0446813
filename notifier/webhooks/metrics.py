"""Webhook metrics: deliveries by outcome, request latency, backlog per endpoint, disablings.

Served by the worker's metrics port (WORKER_METRICS_PORT) with the rest of its metrics; the
backlog gauge is set by the fan-out pump in the worker's main process. Every metric has labels,
so its values are created after the fork, in multiprocess mode (see observability.metrics).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "WEBHOOK_BACKLOG",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_ENDPOINTS_DISABLED",
    "WEBHOOK_EVENTS_LOST",
    "WEBHOOK_LATENCY",
]

#: ``outcome``: delivered (2xx), retry (will be tried again), failed (given up), gone (410).
WEBHOOK_DELIVERIES = Counter(
    "notifier_webhook_deliveries", "Webhook delivery attempts, by outcome.", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "notifier_webhook_request_duration_seconds",
    "How long webhook requests took, until the answer or the error, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_BACKLOG = Gauge(
    "notifier_webhook_backlog",
    "Webhook messages not yet delivered, per endpoint.",
    ["endpoint"],
    multiprocess_mode="livemax",
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "notifier_webhook_endpoints_disabled",
    "Endpoints disabled by notifier: gone (410) or failing for WEBHOOK_DISABLE_AFTER.",
    ["reason"],
)
WEBHOOK_EVENTS_LOST = Counter(
    "notifier_webhook_events_lost",
    "Events that could not be queued for webhooks (Redis unreachable right after the record).",
    ["type"],
)

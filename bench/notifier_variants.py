"""notifier's Celery app with one Celery setting changed, to measure what that setting costs.

Used by ``bench/run.py --notifier-app bench.notifier_variants:<name>``; nothing else imports
it. Each variant is notifier's own app (same tasks, hooks and reliability settings) with the
named settings overridden after it is configured.
"""

from __future__ import annotations

from typing import Any

from notifier.worker.app import app as _app

VARIANTS: dict[str, dict[str, Any]] = {
    # Celery task events (task-received/started/succeeded published per task, for Flower).
    "events_off": {"worker_send_task_events": False},
    # The STARTED state written to the result backend before every task.
    "track_started_off": {"task_track_started": False},
    # NOT a configuration to ship (at-least-once needs prefetch 1): measures what the
    # one-message-per-process hand-off costs against the seed, which prefetches 4.
    "prefetch_4": {"worker_prefetch_multiplier": 4},
    "events_and_track_started_off": {
        "worker_send_task_events": False,
        "task_track_started": False,
    },
}


def _variant(name: str) -> Any:
    _app.conf.update(VARIANTS[name])
    return _app


def __getattr__(name: str) -> Any:
    # ``celery -A bench.notifier_variants:events_off`` looks the app up by attribute name.
    if name in VARIANTS:
        return _variant(name)
    raise AttributeError(name)

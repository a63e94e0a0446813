"""notifier: an event-driven email and notification service.

``celery -A notifier worker`` finds the Celery app as ``notifier.app``. It is loaded lazily so
that ``notifier.client`` and ``notifier.errors`` import without the worker's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from notifier.errors import (
    DeliveryError,
    NotifierError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = [
    "DeliveryError",
    "NotifierError",
    "PermanentDeliveryError",
    "TransientDeliveryError",
    "app",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        import notifier.worker.tasks  # noqa: F401 - registers the tasks with the app
        from notifier.worker.app import app as celery_app

        return celery_app
    raise AttributeError(f"module 'notifier' has no attribute {name!r}")

"""notifier: an event-driven email and notification service.

The public surface is the publisher client and the exception tree:
``from notifier import NotifierClient, NotifierError``. ``celery -A notifier worker`` finds the
Celery app as ``notifier.app``. Both are loaded on first access, so importing ``notifier`` (or
``notifier.client``) needs neither the worker's dependencies nor, for the errors, celery.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from notifier.errors import (
    ConfigurationError,
    DeliveryError,
    HeaderInjection,
    IdempotencyConflict,
    InvalidEvent,
    InvalidNotification,
    InvalidSuppressionCsv,
    InvalidTransition,
    InvalidUnsubscribeToken,
    InvalidWebhookSignature,
    MissingVariable,
    NotificationFailed,
    NotificationNotFound,
    NotifierError,
    PermanentDeliveryError,
    StoreUnavailable,
    TemplateError,
    TemplateNotFound,
    TemplateRenderError,
    TransientDeliveryError,
    UnsafeWebhookUrl,
    WebhookEndpointNotFound,
    WebhookRejected,
)

if TYPE_CHECKING:
    from celery import Celery

    from notifier.client import NotifierClient

    app: Celery
    celery: Celery

# ``app`` is left out on purpose: ``from notifier import *`` must not load the worker's tasks.
__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "HeaderInjection",
    "IdempotencyConflict",
    "InvalidEvent",
    "InvalidNotification",
    "InvalidSuppressionCsv",
    "InvalidTransition",
    "InvalidUnsubscribeToken",
    "InvalidWebhookSignature",
    "MissingVariable",
    "NotificationFailed",
    "NotificationNotFound",
    "NotifierClient",
    "NotifierError",
    "PermanentDeliveryError",
    "StoreUnavailable",
    "TemplateError",
    "TemplateNotFound",
    "TemplateRenderError",
    "TransientDeliveryError",
    "UnsafeWebhookUrl",
    "WebhookEndpointNotFound",
    "WebhookRejected",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "NotifierClient":
        from notifier.client import NotifierClient

        return NotifierClient
    if name in ("app", "celery"):
        try:
            import notifier.worker.tasks  # noqa: F401 - registers the tasks with the app
            from notifier.worker.app import app as celery_app
        except ConfigurationError as exc:
            # ``celery -A notifier ...`` would print this as a traceback inside a usage error;
            # say it in one line and exit non-zero, as ``notifier worker`` does.
            if "celery" in os.path.basename(sys.argv[0]) or sys.argv[0].endswith(
                "celery/__main__.py"
            ):
                print(f"notifier: cannot start: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            raise
        return celery_app
    raise AttributeError(f"module 'notifier' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "NotifierClient", "app"})

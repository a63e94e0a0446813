"""Celery tasks. Each parses its arguments and hands over to a plain function."""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery import Task, states
from celery.exceptions import Ignore, Reject

from notifier.delivery.deliver import DeliveryOutcome, deliver, deliver_many
from notifier.errors import (
    DeliveryError,
    InvalidEvent,
    StoreUnavailable,
    TransientDeliveryError,
)
from notifier.events import handle_event, parse_event
from notifier.worker.app import app
from notifier.worker.runtime import WorkerRuntime, get_runtime

__all__ = [
    "add_numbers",
    "deliver_batch",
    "deliver_notification",
    "handle_event_task",
    "send_email_task",
    "send_notification",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class NotificationFailed(DeliveryError):
    """Raised by a task whose notification ended ``failed``, so Celery records FAILURE."""


def _run_delivery(runtime: WorkerRuntime, coro: Coroutine[Any, Any, T]) -> T:
    """Run a delivery or an event's intake; when Redis is down, give the message back.

    With late acks Celery acknowledges a task that raised, which would lose the message and
    leave the record ``queued`` for ever. Rejecting with requeue puts it back; while Redis is
    still down that fails too and the message stays unacked until the broker's visibility
    timeout restores it.
    """
    try:
        return runtime.run(coro)
    except StoreUnavailable as exc:
        log.warning("Redis is unreachable, giving the task back to the broker: %s", exc)
        time.sleep(1.0)  # do not spin on a message while Redis restarts
        raise Reject(str(exc), requeue=True) from exc


def _finish(task: Task, outcome: DeliveryOutcome) -> dict[str, Any]:
    if outcome.status in ("retrying", "deferred"):
        # The retry waits on our schedule, not in the broker; show RETRY until it runs.
        # RETRY is an exception state for Celery, so its meta must be an exception.
        task.update_state(state=states.RETRY, meta=TransientDeliveryError(outcome.detail))
        raise Ignore()
    if outcome.status == "failed":
        raise NotificationFailed(outcome.detail)
    return outcome.as_result()


@app.task(name="add_numbers", bind=True)
def add_numbers(self: Task, x: int, y: int) -> int | float:
    """The health-check task: adds two numbers, no sleep."""
    for name, value in (("x", x), ("y", y)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"add_numbers: {name} must be a number, got {type(value).__name__} {value!r}"
            )
    log.info("Task %s: %s + %s", self.request.id, x, y)
    return x + y


@app.task(name="notifier.send", bind=True, throws=(NotificationFailed,))
def send_notification(self: Task, **request: Any) -> dict[str, Any]:
    """Send one notification given in the HTTP API's body shape; the task id is its id."""
    runtime = get_runtime()
    outcome = _run_delivery(
        runtime, deliver(runtime.context, self.request.id, request_data=request, source="celery")
    )
    return _finish(self, outcome)


@app.task(name="notifier.deliver", bind=True, throws=(NotificationFailed,))
def deliver_notification(self: Task, notification_id: str) -> dict[str, Any]:
    """Send a notification whose record already exists (queued by the API or the schedule)."""
    runtime = get_runtime()
    outcome = _run_delivery(runtime, deliver(runtime.context, notification_id))
    return _finish(self, outcome)


@app.task(name="notifier.deliver_batch", ignore_result=True)
def deliver_batch(notification_ids: list[str]) -> dict[str, Any]:
    """Send a chunk of stored notifications (the batch API's fan-out; internal).

    Each is claimed, sent and recorded on its own; retries go through the schedule as single
    ``notifier.deliver`` messages. Redelivering the chunk is safe: sent ones are skipped.
    """
    if not isinstance(notification_ids, list) or not all(
        isinstance(i, str) for i in notification_ids
    ):
        raise TypeError("notifier.deliver_batch takes one list of notification ids")
    runtime = get_runtime()
    outcome = _run_delivery(runtime, deliver_many(runtime.contexts, notification_ids))
    return outcome.as_result()


@app.task(name="send_email_task", bind=True, throws=(NotificationFailed,))
def send_email_task(self: Task, email_to: str, subject: str, body: str) -> dict[str, Any]:
    """The original design's task: a plain email; returns ``{"status": "success", ...}``."""
    runtime = get_runtime()
    request = {
        "to": [email_to],
        "template": "plain",
        "context": {"subject": subject, "body": body},
    }
    outcome = _run_delivery(
        runtime,
        deliver(
            runtime.context,
            self.request.id,
            request_data=request,
            source="compat",
            result_format="seed",
        ),
    )
    return _finish(self, outcome)


@app.task(name="notifier.event", throws=(InvalidEvent,))
def handle_event_task(event: Any) -> dict[str, Any]:
    """Route one event (a CloudEvents envelope: dict or JSON) to the notifications it asks for.

    Publishers call ``send_task("notifier.event", args=[envelope])`` (or ``kwargs={"event": ...}``).
    An invalid envelope fails the task for good with InvalidEvent naming the field.
    """
    envelope = parse_event(event)
    runtime = get_runtime()
    # An event with an id is safe to handle again (its notification ids are derived from it).
    result = _run_delivery(
        runtime,
        handle_event(
            envelope,
            store=runtime.store,
            renderer=runtime.renderer,
            rules=runtime.rules,
            settings=runtime.settings,
        ),
    )
    return result.as_dict()

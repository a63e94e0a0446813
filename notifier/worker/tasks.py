"""Celery tasks. Each parses its arguments and hands over to a plain function."""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery import Task, states
from celery.exceptions import Ignore, Reject

from notifier.delivery.batch import ChunkOutcome, deliver_many
from notifier.delivery.deliver import deliver, deliver_request
from notifier.delivery.outcome import DeliveryOutcome
from notifier.errors import (
    InvalidEvent,
    NotificationFailed,
    StoreUnavailable,
    TransientDeliveryError,
)
from notifier.events import handle_event, parse_event
from notifier.messages import (
    ADD_NUMBERS_TASK,
    DELIVER_BATCH_TASK,
    DELIVER_TASK,
    EVENT_TASK,
    SEND_EMAIL_TASK,
    SEND_TASK,
)
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


def _finish(task: Task, outcome: DeliveryOutcome, *, seed_shape: bool = False) -> dict[str, Any]:
    """The task's result for ``outcome``, or the exception that makes Celery record it.

    ``seed_shape``: answer the original design's ``{"status": "success", "email": ...}``.
    """
    if outcome.status in ("retrying", "deferred"):
        # The retry waits on our schedule, not in the broker; show RETRY until it runs.
        # RETRY is an exception state for Celery, so its meta must be an exception.
        meta = outcome.error or TransientDeliveryError(outcome.detail)
        task.update_state(state=states.RETRY, meta=meta)
        raise Ignore()
    if outcome.status == "failed":
        error = outcome.error
        raise NotificationFailed(
            outcome.detail,
            code=error.code if error else None,
            recipient=error.recipient if error else None,
        ) from error
    if seed_shape and outcome.record_status == "sent":
        return {"status": "success", "email": outcome.to[0] if outcome.to else None}
    return {
        "id": outcome.id,
        "status": outcome.record_status or outcome.status,
        "message_id": outcome.message_id,
        "detail": outcome.detail,
    }


def _chunk_result(chunk: ChunkOutcome) -> dict[str, Any]:
    """``notifier.deliver_batch``'s result: how many ids ended in each status."""
    counts: dict[str, int] = {}
    for outcome in chunk.outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return {
        "notifications": len(chunk.outcomes) + len(chunk.requeued),
        **counts,
        "requeued": len(chunk.requeued),
    }


@app.task(name=ADD_NUMBERS_TASK, bind=True)
def add_numbers(self: Task, x: int, y: int) -> int | float:
    """The health-check task: adds two numbers, no sleep."""
    for name, value in (("x", x), ("y", y)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"add_numbers: {name} must be a number, got {type(value).__name__} {value!r}"
            )
    log.info("Task %s: %s + %s", self.request.id, x, y)
    return x + y


@app.task(name=SEND_TASK, bind=True, throws=(NotificationFailed,))
def send_notification(self: Task, **request: Any) -> dict[str, Any]:
    """Send one notification given in the HTTP API's body shape; the task id is its id."""
    runtime = get_runtime()
    outcome = _run_delivery(
        runtime, deliver_request(runtime.context, self.request.id, request, source="celery")
    )
    return _finish(self, outcome)


@app.task(name=DELIVER_TASK, bind=True, throws=(NotificationFailed,))
def deliver_notification(self: Task, notification_id: str) -> dict[str, Any]:
    """Send a notification whose record already exists (queued by the API or the schedule)."""
    runtime = get_runtime()
    outcome = _run_delivery(runtime, deliver(runtime.context, notification_id))
    # A retry of the original design's task (source "compat") answers in its shape.
    return _finish(self, outcome, seed_shape=outcome.source == "compat")


@app.task(name=DELIVER_BATCH_TASK, ignore_result=True)
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
    chunk = _run_delivery(
        runtime, deliver_many(runtime.contexts, notification_ids, slots=runtime.batch_slots)
    )
    return _chunk_result(chunk)


@app.task(name=SEND_EMAIL_TASK, bind=True, throws=(NotificationFailed,))
def send_email_task(self: Task, email_to: str, subject: str, body: str) -> dict[str, Any]:
    """The original design's task: a plain email; returns ``{"status": "success", ...}``."""
    runtime = get_runtime()
    request = {
        "to": [email_to],
        "template": "plain",
        "context": {"subject": subject, "body": body},
    }
    outcome = _run_delivery(
        runtime, deliver_request(runtime.context, self.request.id, request, source="compat")
    )
    return _finish(self, outcome, seed_shape=True)


@app.task(name=EVENT_TASK, throws=(InvalidEvent,))
def handle_event_task(event: Any) -> dict[str, Any]:
    """Route one event (a CloudEvents envelope: dict or JSON) to the notifications it asks for.

    Publishers call ``send_task("notifier.event", args=[envelope])`` (or ``kwargs={"event": ...}``).
    An invalid envelope fails the task for good with InvalidEvent naming the field.
    """
    try:
        envelope = parse_event(event)
    except InvalidEvent as exc:
        # Celery logs a failure it was told to expect at INFO, among the per-task lines that
        # LOG_CELERY_TASKS turns off: say it here, once, as delivery says a failed send.
        log.warning("event refused: %s", exc)
        raise
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

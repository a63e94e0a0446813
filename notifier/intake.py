"""Intake: turn a validated notification into a stored record and a queued (or scheduled) task."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import (
    Notification,
    NotificationRequest,
    parse_request,
    validate_notification,
)
from notifier.errors import NotifierError, describe_error
from notifier.messages import DELIVER_BATCH_TASK, DELIVER_TASK, build_task_message
from notifier.observability.metrics import FAILED, count_accepted, template_label
from notifier.settings import Settings
from notifier.storage.store import (
    AcceptItem,
    AcceptResult,
    ClaimResult,
    NotificationStore,
)
from notifier.webhooks.emit import accepted_event, emit, record_event

__all__ = [
    "TakenRequest",
    "accept_batch",
    "accept_notification",
    "cancel_notification",
    "deliver_batch_message",
    "deliver_message",
    "new_notification_id",
    "record_fields",
    "record_rejected",
    "request_fingerprint",
    "requeue_notification",
    "take_request",
]

log = logging.getLogger(__name__)


def new_notification_id() -> str:
    return str(uuid.uuid4())


def _mask(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def deliver_message(notification_id: str, *, retries: int = 0, summary: str = "") -> bytes:
    """The task message that makes a worker send the stored notification ``notification_id``."""
    return build_task_message(
        task=DELIVER_TASK,
        task_id=notification_id,
        args=[notification_id],
        retries=retries,
        argsrepr=repr((notification_id,)),
        kwargsrepr=summary or "{}",
    )


def deliver_batch_message(notification_ids: Sequence[str]) -> bytes:
    """One task message that makes a worker send every stored notification in the list."""
    return build_task_message(
        task=DELIVER_BATCH_TASK,
        task_id=new_notification_id(),
        args=[list(notification_ids)],
        argsrepr=f"({len(notification_ids)} notifications)",
    )


def describe(notification: Notification) -> str:
    """A short, address-masked summary for Flower and logs."""
    to = ", ".join(_mask(a.addr_spec) for a in notification.to)
    what = notification.template or "raw"
    return f"{{'template': {what!r}, 'to': {to!r}}}"


def record_fields(
    notification: Notification,
    *,
    source: str,
    event_id: str | None = None,
    owner: str | None = None,
) -> dict[str, str]:
    """The record hash fields describing what was asked for."""
    request = notification.request
    fields = {
        "source": source,
        "template": request.template or "",
        "locale": notification.locale or request.locale or "",
        "to": orjson.dumps([str(a) for a in notification.to]).decode(),
        "cc": orjson.dumps([str(a) for a in notification.cc]).decode(),
        "bcc": orjson.dumps([str(a) for a in notification.bcc]).decode(),
        "metadata": orjson.dumps(request.metadata).decode(),
        "payload": request.model_dump_json(),
        "attempt_count": "0",
    }
    if request.send_at is not None:
        fields["send_at"] = repr(request.send_at.timestamp())
    if event_id:
        fields["event_id"] = event_id
    if owner:
        fields["owner"] = owner
    return fields


def request_fingerprint(request: NotificationRequest | Mapping[str, Any]) -> str:
    """A stable hash of a request body, to tell a repeated request from a different one."""
    data = request.model_dump(mode="json") if isinstance(request, NotificationRequest) else request
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def accept_notification(
    store: NotificationStore,
    notification: Notification,
    *,
    source: str,
    notification_id: str | None = None,
    event_id: str | None = None,
    idempotency_key: str | None = None,
    idempotency_ttl: int = 86400,
    now: datetime | None = None,
    owner: str | None = None,
) -> AcceptResult:
    """Store the record and queue its delivery in one atomic step.

    A notification with a future ``send_at`` is stored as ``scheduled`` and queued by the
    dispatcher when due. A known id or idempotency key queues nothing a second time.
    """
    notification_id = notification_id or new_notification_id()
    now = now or datetime.now(UTC)
    send_at = notification.request.send_at
    due = send_at.timestamp() if send_at is not None and notification.is_scheduled(now) else None
    fingerprint = request_fingerprint(notification.request) if idempotency_key else ""
    event = accepted_event(
        notification_id, notification, owner=owner, at=now.timestamp(), event_id=event_id
    )
    result = await store.accept(
        notification_id=notification_id,
        fields=record_fields(notification, source=source, event_id=event_id, owner=owner),
        message=deliver_message(notification_id, summary=describe(notification)),
        due=due,
        idempotency_key=idempotency_key,
        idempotency_value=f"{notification_id}|{fingerprint}",
        idempotency_ttl=idempotency_ttl,
        now=now.timestamp(),
        events=[event.to_json()],
    )
    if result.created:
        count_accepted(notification.template, source)
    return result


async def accept_batch(
    store: NotificationStore,
    notifications: Sequence[Notification],
    *,
    source: str,
    chunk_size: int,
    now: datetime | None = None,
    owner: str | None = None,
) -> list[AcceptResult]:
    """Store many notifications and queue their delivery in ONE atomic Redis step.

    Notifications to send now are queued as ``notifier.deliver_batch`` messages of up to
    ``chunk_size`` ids each (Celery's per-task cost is paid once per chunk); scheduled ones are
    put on the schedule one by one, as :func:`accept_notification` does. Results are in order.
    """
    now = now or datetime.now(UTC)
    items: list[AcceptItem] = []
    immediate: list[str] = []
    for notification in notifications:
        notification_id = new_notification_id()
        send_at = notification.request.send_at
        scheduled = send_at is not None and notification.is_scheduled(now)
        items.append(
            AcceptItem(
                notification_id=notification_id,
                fields=record_fields(notification, source=source, owner=owner),
                # No message of its own when sent now: the chunk message below carries its id.
                message=deliver_message(notification_id, summary=describe(notification))
                if scheduled
                else None,
                due=send_at.timestamp() if scheduled and send_at is not None else None,
                events=(
                    accepted_event(
                        notification_id, notification, owner=owner, at=now.timestamp()
                    ).to_json(),
                ),
            )
        )
        if not scheduled:
            immediate.append(notification_id)
    messages = [
        deliver_batch_message(immediate[start : start + chunk_size])
        for start in range(0, len(immediate), chunk_size)
    ]
    results = await store.accept_many(items, messages=messages, now=now.timestamp())
    for notification, result in zip(notifications, results, strict=True):
        if result.created:
            count_accepted(notification.template, source)
    return results


async def record_rejected(
    store: NotificationStore,
    notification_id: str,
    *,
    fields: Mapping[str, str],
    reason: str,
) -> AcceptResult:
    """Keep a ``failed`` record of a notification refused before it could be queued.

    The publisher can then look up why. Nothing is queued, so it is never retried; an id
    that already has a record is left as it is (``created`` is False).
    """
    result = await store.accept(notification_id=notification_id, fields=fields, message=None)
    if result.created:
        await store.transition(
            notification_id,
            allowed=("queued",),
            to="failed",
            fields={"reason": reason, "error_code": ""},
        )
        record = await store.find(notification_id)
        if record is not None:
            event = record_event("failed", record, at=time.time(), smtp_message=reason)
            await emit(store.redis, store.keys, event)
    return result


@dataclass(frozen=True, slots=True)
class TakenRequest:
    """What became of a publisher's request handed straight to a worker."""

    #: The claim of the record when it was created (or found) already claimed in one step;
    #: None when the caller still has to claim it.
    claim: ClaimResult | None = None
    #: The validated request, when the record was created from it (no need to parse it again).
    notification: Notification | None = None
    #: Why the request was refused; a ``failed`` record keeps the reason.
    refused: str | None = None


async def take_request(
    store: NotificationStore,
    notification_id: str,
    request_data: Mapping[str, Any],
    *,
    source: str,
    settings: Settings,
    renderer: TemplateRenderer,
) -> TakenRequest:
    """Create the record of a request sent as a task message (``notifier.send``, the seed's task).

    A request to send now is created already claimed, in one script instead of accept then
    claim; a scheduled one is parked on the schedule; an invalid one is kept as ``failed``.
    A record that exists already (the message was redelivered) is left as it is.
    """
    try:
        notification = validate_notification(
            parse_request(request_data), settings=settings, renderer=renderer
        )
    except NotifierError as exc:
        reason = f"invalid notification: {describe_error(exc)}"
        result = await record_rejected(
            store, notification_id, fields=_rejected_fields(request_data, source), reason=reason
        )
        if not result.created:
            return TakenRequest()
        template = template_label(str(request_data.get("template") or ""), renderer.has_template)
        FAILED.labels(template=template, reason="invalid").inc()
        log.warning("notification refused: %s", describe_error(exc))
        return TakenRequest(refused=reason)
    fields = record_fields(notification, source=source)
    events = [accepted_event(notification_id, notification, owner=None, at=time.time()).to_json()]
    if notification.is_scheduled():
        # A publisher asked for a later send: park it on the schedule instead of sending now.
        assert notification.request.send_at is not None
        result = await store.accept(
            notification_id=notification_id,
            fields=fields,
            message=deliver_message(notification_id),
            due=notification.request.send_at.timestamp(),
            events=events,
        )
        if result.created:
            count_accepted(notification.template, source)
        return TakenRequest()
    claim, created = await store.create_and_claim(
        notification_id, fields=fields, lease_seconds=settings.sending_lease_seconds, events=events
    )
    if not created:
        return TakenRequest(claim=claim)  # an existing record: send what it stores
    count_accepted(notification.template, source)
    return TakenRequest(claim=claim, notification=notification)


def _rejected_fields(request_data: Mapping[str, Any], source: str) -> dict[str, str]:
    """The record fields of a refused request: what it asked for, as far as it can be read."""
    to = request_data.get("to")
    return {
        "source": source,
        "template": str(request_data.get("template") or ""),
        "to": orjson.dumps(to if isinstance(to, list) else [str(to or "")]).decode(),
        "payload": orjson.dumps(dict(request_data), default=str).decode(),
    }


async def cancel_notification(store: NotificationStore, notification_id: str) -> None:
    """Cancel a notification that has not started sending; it will never be sent.

    Raises NotificationNotFound, or InvalidTransition once it is sending or finished.
    """
    await store.transition(
        notification_id,
        allowed=("queued", "scheduled", "retrying"),
        to="cancelled",
        fields={"reason": "cancelled"},
        action="unschedule",
    )
    record = await store.find(notification_id)
    if record is not None:
        await emit(store.redis, store.keys, record_event("cancelled", record, at=time.time()))


async def requeue_notification(store: NotificationStore, notification_id: str) -> None:
    """Queue a ``failed`` notification (a dead letter) again, with a fresh attempt budget.

    Raises NotificationNotFound, or InvalidTransition when it has not failed.
    """
    await store.transition(
        notification_id,
        allowed=("failed",),
        to="queued",
        fields={"reason": "", "error_code": "", "attempt_count": "0"},
        action="queue",
        message=deliver_message(notification_id),
    )

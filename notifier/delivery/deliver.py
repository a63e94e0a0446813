"""Delivery: claim a notification, render it, send it over SMTP and record the outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from notifier.compose.addresses import Address
from notifier.compose.mime import OutgoingEmail, build_email
from notifier.compose.rendering import RenderedEmail, TemplateRenderer
from notifier.compose.requests import Notification, parse_request, validate_notification
from notifier.delivery.backoff import backoff_delay
from notifier.delivery.transport import SendResult, SMTPTransport
from notifier.errors import (
    DeliveryError,
    InvalidNotification,
    InvalidTransition,
    NotifierError,
    PermanentDeliveryError,
    StoreUnavailable,
    TemplateError,
    TransientDeliveryError,
)
from notifier.intake import (
    deliver_batch_message,
    deliver_message,
    describe,
    record_fields,
    record_rejected,
)
from notifier.observability.logs import log_context, update_log_context
from notifier.observability.metrics import (
    DELIVERY_LATENCY,
    FAILED,
    RETRIED,
    SENT,
    SMTP_DURATION,
    count_accepted,
    count_smtp_reply,
    template_label,
)
from notifier.settings import Settings
from notifier.storage.store import Attempt, ClaimResult, NotificationRecord, NotificationStore

__all__ = [
    "ChunkOutcome",
    "DeliveryContext",
    "DeliveryOutcome",
    "chunk_start_budget",
    "deliver",
    "deliver_many",
    "describe_error",
    "render_notification",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What delivery needs, built once per worker process."""

    settings: Settings
    store: NotificationStore
    transport: SMTPTransport
    renderer: TemplateRenderer
    sender: Address


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one execution of the delivery task did."""

    id: str
    status: Literal["sent", "failed", "retrying", "skipped", "deferred", "missing"]
    detail: str = ""
    record_status: str | None = None
    message_id: str | None = None
    retry_in: float | None = None
    result_format: str = "notification"
    email: str | None = None

    def as_result(self) -> dict[str, Any]:
        """The Celery task result."""
        if self.result_format == "seed" and self.record_status == "sent":
            return {"status": "success", "email": self.email}
        return {
            "id": self.id,
            "status": self.record_status or self.status,
            "message_id": self.message_id,
            "detail": self.detail,
        }


def render_notification(renderer: TemplateRenderer, notification: Notification) -> RenderedEmail:
    request = notification.request
    if request.template is not None:
        return renderer.render(
            request.template, request.context, locale=notification.locale, subject=request.subject
        )
    return renderer.render_inline(
        subject=request.subject or "", text=request.text, html=request.html
    )


def _remaining_recipients(email: OutgoingEmail, record: NotificationRecord) -> tuple[str, ...]:
    """Envelope recipients not yet delivered to and not refused for good."""
    done = {a.lower() for a in record.delivered_to}
    done |= {a.lower() for a, info in record.refused.items() if info.get("permanent")}
    return tuple(r for r in email.recipients if r.lower() not in done)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def deliver(
    ctx: DeliveryContext,
    notification_id: str,
    *,
    request_data: Mapping[str, Any] | None = None,
    source: str = "celery",
    result_format: str = "notification",
) -> DeliveryOutcome:
    """Send notification ``notification_id`` once, however often its task message arrives.

    ``request_data`` is the publisher's wire-shape request when the record may not exist yet
    (``notifier.send`` and ``send_email_task``); the record is then created first.
    Every log line inside carries the notification's id (and, once claimed, its template,
    attempt and event id).
    """
    with log_context(notification_id=notification_id):
        return await _deliver(
            ctx,
            notification_id,
            request_data=request_data,
            source=source,
            result_format=result_format,
        )


async def _deliver(
    ctx: DeliveryContext,
    notification_id: str,
    *,
    request_data: Mapping[str, Any] | None,
    source: str,
    result_format: str,
) -> DeliveryOutcome:
    store, settings = ctx.store, ctx.settings
    claim: ClaimResult | None = None
    # A publisher's request is validated once, here; when the record is created from it, the
    # parsed Notification is used for sending instead of parsing the stored payload again.
    notification: Notification | None = None
    if request_data is not None:
        try:
            notification = validate_notification(
                parse_request(request_data), settings=settings, renderer=ctx.renderer
            )
        except NotifierError:
            notification = None  # the path below records the refusal (or finds the record)
        if notification is not None and not notification.is_scheduled():
            # Create the record already claimed: one script instead of claim, accept, claim.
            claim, created = await store.create_and_claim(
                notification_id,
                fields=record_fields(notification, source=source, result_format=result_format),
                lease_seconds=settings.sending_lease_seconds,
            )
            if created:
                count_accepted(notification.template, source)
            else:
                notification = None  # an existing record: send what it stores
    if claim is None:
        claim = await store.claim(notification_id, lease_seconds=settings.sending_lease_seconds)
        if claim.outcome == "missing" and request_data is not None:
            refused = await _create_record(
                ctx, notification_id, request_data, source, result_format, notification
            )
            if refused is not None:
                return DeliveryOutcome(notification_id, "failed", refused, record_status="failed")
            notification = None
            claim = await store.claim(notification_id, lease_seconds=settings.sending_lease_seconds)

    if claim.outcome == "missing":
        log.warning("notification %s has no record (expired or never accepted)", notification_id)
        return DeliveryOutcome(notification_id, "missing", "no record")
    if claim.outcome == "done":
        record = await store.get(notification_id)
        if claim.status == "scheduled":
            return _finished(record, "skipped", "scheduled: the dispatcher queues it when due")
        return _finished(record, "skipped", f"already {claim.status}")
    if claim.outcome == "busy":
        # Another delivery holds the lease (or held it and crashed). Look again when it ends.
        assert claim.lease_until is not None
        await store.defer(
            notification_id, until=claim.lease_until, message=deliver_message(notification_id)
        )
        return DeliveryOutcome(notification_id, "deferred", "another delivery is in progress")

    assert claim.record is not None
    record = claim.record
    attempt_number = record.attempt_count
    update_log_context(
        template=template_label(record.template), attempt=attempt_number, event_id=record.event_id
    )
    try:
        if notification is None:
            notification = validate_notification(
                parse_request(record.payload), settings=settings, renderer=ctx.renderer
            )
        rendered = render_notification(ctx.renderer, notification)
        email = build_email(
            notification_id=notification_id,
            sender=ctx.sender,
            to=notification.to,
            cc=notification.cc,
            bcc=notification.bcc,
            reply_to=notification.reply_to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            headers=notification.headers,
            attachments=notification.attachments,
        )
    except (InvalidNotification, TemplateError) as exc:
        return await _fail(
            ctx,
            record,
            attempt_number,
            PermanentDeliveryError(describe_error(exc)),
            reason_class="invalid",
        )

    recipients = _remaining_recipients(email, record)
    started = time.monotonic()
    try:
        result = await ctx.transport.send(email, recipients=recipients)
    except TransientDeliveryError as exc:
        _observe_smtp(started, "transient", exc.code)
        return await _retry_or_fail(ctx, record, attempt_number, exc, email.message_id)
    except DeliveryError as exc:
        _observe_smtp(started, "permanent", exc.code)
        return await _fail(ctx, record, attempt_number, exc, email.message_id)
    _observe_smtp(started, "sent", 250)
    for refused_error in result.refused.values():
        count_smtp_reply(refused_error.code)
    log.info(
        "notification %s sent (attempt %d, %.0f ms): %s",
        notification_id,
        attempt_number,
        (time.monotonic() - started) * 1000,
        describe(notification),
    )
    return await _record_sent(ctx, record, attempt_number, result, email.message_id)


def _observe_smtp(started: float, outcome: str, code: int | None) -> None:
    SMTP_DURATION.labels(outcome=outcome).observe(time.monotonic() - started)
    count_smtp_reply(code)


async def _create_record(
    ctx: DeliveryContext,
    notification_id: str,
    request_data: Mapping[str, Any],
    source: str,
    result_format: str,
    notification: Notification | None = None,
) -> str | None:
    """Create the record of a publisher's request; returns the reason when it is refused.

    ``notification`` is the request already validated, when it was valid.
    """
    try:
        if notification is None:
            notification = validate_notification(
                parse_request(request_data), settings=ctx.settings, renderer=ctx.renderer
            )
    except NotifierError as exc:
        # Keep a record of what was refused so the publisher can look it up.
        fields = {
            "source": source,
            "result_format": result_format,
            "template": str(request_data.get("template") or ""),
            "to": _json(
                request_data.get("to")
                if isinstance(request_data.get("to"), list)
                else [str(request_data.get("to", ""))]
            ),
            "payload": _json(dict(request_data)),
        }
        reason = f"invalid notification: {describe_error(exc)}"
        await record_rejected(ctx.store, notification_id, fields=fields, reason=reason)
        template = template_label(fields["template"], ctx.renderer.has_template)
        FAILED.labels(template=template, reason="invalid").inc()
        log.warning("notification refused: %s", describe_error(exc))
        return reason
    fields = record_fields(notification, source=source, result_format=result_format)
    if notification.is_scheduled():
        # A publisher asked for a later send: park it on the schedule instead of sending now.
        assert notification.request.send_at is not None
        await ctx.store.accept(
            notification_id=notification_id,
            fields=fields,
            message=deliver_message(notification_id),
            due=notification.request.send_at.timestamp(),
        )
    else:
        await ctx.store.accept(notification_id=notification_id, fields=fields, message=None)
    count_accepted(notification.template, source)
    return None


def describe_error(exc: NotifierError) -> str:
    """The error's message, led by the field it names when it names one."""
    field = getattr(exc, "field", None)
    text = str(exc)
    return text if not field or text.startswith(field) else f"{field}: {text}"


def _finished(
    record: NotificationRecord, status: Literal["skipped"], detail: str
) -> DeliveryOutcome:
    return DeliveryOutcome(
        record.id,
        status,
        detail,
        record_status=record.status,
        message_id=record.message_id,
        result_format=_result_format(record),
        email=record.to[0] if record.to else None,
    )


def _result_format(record: NotificationRecord) -> str:
    return "seed" if record.source == "compat" else "notification"


async def _record(ctx: DeliveryContext, notification_id: str, **transition: Any) -> None:
    """Record what an SMTP attempt did, riding out a short Redis outage.

    By now the server has answered; giving up here would leave the record ``sending`` and
    make a later delivery send the email again. So retry while Redis is unreachable, for as
    long as the task's time limit allows (the send itself took at most ``SEND_TIMEOUT``) and
    well inside the sending lease (``SEND_TIMEOUT`` + 30 s), so no other delivery takes over.
    """
    settings = ctx.settings
    budget = _record_budget(settings)
    deadline = time.monotonic() + budget
    delay, interrupted = 0.1, False
    while True:
        try:
            await ctx.store.transition(notification_id, **transition)
            return
        except StoreUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            if not interrupted:
                log.warning(
                    "notification %s: cannot record the outcome yet: %s", notification_id, exc
                )
            interrupted = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        except InvalidTransition as exc:
            # The connection may have dropped after Redis applied the script.
            if interrupted and exc.status == transition.get("to"):
                return
            raise


def _refusal_info(errors: Mapping[str, DeliveryError]) -> dict[str, dict[str, Any]]:
    return {
        address: {
            "code": error.code,
            "message": str(error),
            "permanent": isinstance(error, PermanentDeliveryError),
        }
        for address, error in errors.items()
    }


async def _record_sent(
    ctx: DeliveryContext,
    record: NotificationRecord,
    attempt_number: int,
    result: SendResult,
    message_id: str,
) -> DeliveryOutcome:
    now = time.time()
    delivered = list(dict.fromkeys([*record.delivered_to, *result.accepted]))
    refused = {**record.refused, **_refusal_info(result.refused)}
    attempt = Attempt(
        number=attempt_number,
        at=now,
        outcome="sent",
        code=250,
        message=result.reply,
        refused=_refusal_info(result.refused),
    )
    fields = {
        "message_id": message_id,
        "smtp_reply": result.reply,
        "delivered_to": _json(delivered),
        "refused": _json(refused),
        "lease_until": "",
    }
    transient = {a: e for a, e in result.refused.items() if isinstance(e, TransientDeliveryError)}
    if transient and attempt_number < ctx.settings.retry_max_attempts:
        # Some recipients were deferred (4xx): retry just those later.
        delay = backoff_delay(
            attempt_number, base=ctx.settings.retry_backoff_base, cap=ctx.settings.retry_backoff_max
        )
        first = next(iter(transient.values()))
        fields["reason"] = f"{len(transient)} recipient(s) deferred: {first}"
        await _record(
            ctx,
            record.id,
            allowed=("sending",),
            to="retrying",
            fields=fields,
            attempt=attempt,
            action="schedule",
            message=deliver_message(record.id, retries=attempt_number),
            due=now + delay,
            now=now,
        )
        RETRIED.labels(template=template_label(record.template), reason="transient").inc()
        return DeliveryOutcome(
            record.id, "retrying", fields["reason"], "retrying", message_id, delay
        )
    fields["sent_at"] = repr(now)
    if result.refused:
        fields["reason"] = "; ".join(f"{a}: {e}" for a, e in result.refused.items())
    await _record(
        ctx, record.id, allowed=("sending",), to="sent", fields=fields, attempt=attempt, now=now
    )
    template = template_label(record.template)
    SENT.labels(template=template).inc()
    DELIVERY_LATENCY.labels(template=template).observe(max(0.0, now - record.created_at))
    return DeliveryOutcome(
        record.id,
        "sent",
        result.reply,
        record_status="sent",
        message_id=message_id,
        result_format=_result_format(record),
        email=record.to[0] if record.to else None,
    )


async def _retry_or_fail(
    ctx: DeliveryContext,
    record: NotificationRecord,
    attempt_number: int,
    error: TransientDeliveryError,
    message_id: str | None,
) -> DeliveryOutcome:
    settings = ctx.settings
    if attempt_number >= settings.retry_max_attempts:
        exhausted = TransientDeliveryError(
            f"gave up after {attempt_number} attempts: {error}",
            code=error.code,
            recipient=error.recipient,
        )
        return await _fail(ctx, record, attempt_number, exhausted, message_id, last=error)
    now = time.time()
    delay = backoff_delay(
        attempt_number, base=settings.retry_backoff_base, cap=settings.retry_backoff_max
    )
    await _record(
        ctx,
        record.id,
        allowed=("sending",),
        to="retrying",
        fields={
            "reason": str(error),
            "error_code": str(error.code or ""),
            "lease_until": "",
        },
        attempt=_attempt(record, attempt_number, now, "transient", error),
        action="schedule",
        message=deliver_message(record.id, retries=attempt_number),
        due=now + delay,
        now=now,
    )
    RETRIED.labels(template=template_label(record.template), reason="transient").inc()
    log.warning(
        "notification %s attempt %d failed (%s); retrying in %.1fs",
        record.id,
        attempt_number,
        error,
        delay,
    )
    return DeliveryOutcome(record.id, "retrying", str(error), "retrying", message_id, delay)


def _attempt(
    record: NotificationRecord,
    attempt_number: int,
    now: float,
    outcome: Literal["transient", "permanent"],
    error: DeliveryError,
) -> Attempt:
    return Attempt(
        number=attempt_number,
        at=now,
        outcome=outcome,
        code=error.code,
        message=str(error),
    )


async def _fail(
    ctx: DeliveryContext,
    record: NotificationRecord,
    attempt_number: int,
    error: DeliveryError,
    message_id: str | None = None,
    *,
    last: DeliveryError | None = None,
    reason_class: Literal["invalid"] | None = None,
) -> DeliveryOutcome:
    now = time.time()
    outcome: Literal["transient", "permanent"] = (
        "transient" if isinstance(last or error, TransientDeliveryError) else "permanent"
    )
    await _record(
        ctx,
        record.id,
        allowed=("sending",),
        to="failed",
        fields={
            "reason": str(error),
            "error_code": str(error.code or ""),
            "lease_until": "",
            "message_id": message_id or "",
        },
        attempt=_attempt(record, attempt_number, now, outcome, last or error),
        now=now,
    )
    FAILED.labels(template=template_label(record.template), reason=reason_class or outcome).inc()
    log.error("notification %s failed for good: %s", record.id, error)
    return DeliveryOutcome(record.id, "failed", str(error), record_status="failed")


def _record_budget(settings: Settings) -> float:
    """How long recording an SMTP attempt's outcome may ride out a Redis outage."""
    return max(1.0, min(25.0, settings.task_time_limit - settings.send_timeout - 1.0))


def chunk_start_budget(settings: Settings) -> float:
    """Seconds into a ``notifier.deliver_batch`` task during which it may start another send.

    One notification takes at most ``SEND_TIMEOUT`` for SMTP plus the time recording its
    outcome may wait for Redis, so anything started within this budget ends before
    ``TASK_TIME_LIMIT`` (which is shorter than ``BROKER_VISIBILITY_TIMEOUT``): a chunk is never
    killed by its time limit half-way, which would acknowledge its message with ids unsent.
    Defaults: 120 - (60 + 25 + 1) = 34 s. What is left is queued again as a new chunk.
    """
    per_notification = settings.send_timeout + _record_budget(settings) + 1.0
    return max(0.0, settings.task_time_limit - per_notification)


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What one ``notifier.deliver_batch`` task did with its ids."""

    outcomes: tuple[DeliveryOutcome, ...]
    #: Ids not started before the chunk's start budget ran out; queued again as a new chunk.
    requeued: tuple[str, ...] = ()

    def as_result(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return {
            "notifications": len(self.outcomes) + len(self.requeued),
            **counts,
            "requeued": len(self.requeued),
        }


async def deliver_many(
    contexts: Sequence[DeliveryContext],
    notification_ids: Sequence[str],
    *,
    started: float | None = None,
) -> ChunkOutcome:
    """Deliver stored notifications, each claimed, sent and recorded on its own.

    Up to ``len(contexts)`` run at once, each over its context's own SMTP connection (the
    transport is not shared), so one's Redis round trips overlap another's SMTP exchange.
    A crash anywhere loses nothing: the chunk's task message is redelivered (late ack) and
    every id is claimed again, so the ones already ``sent`` are skipped. Ids not started
    within :func:`chunk_start_budget` are queued again as a new chunk message.
    Raises StoreUnavailable when Redis failed under any of them (the caller gives the
    message back to the broker).
    """
    if not contexts:
        raise ValueError("deliver_many needs at least one delivery context")
    started = time.monotonic() if started is None else started
    deadline = started + chunk_start_budget(contexts[0].settings)
    idle: asyncio.Queue[DeliveryContext] = asyncio.Queue()
    for ctx in contexts:
        idle.put_nowait(ctx)
    first_wave = len(contexts)
    requeued: list[str] = []

    async def one(position: int, notification_id: str) -> DeliveryOutcome | None:
        ctx = await idle.get()
        try:
            # The first wave always starts, so a chunk makes progress however short the budget.
            if position >= first_wave and time.monotonic() > deadline:
                requeued.append(notification_id)
                return None
            return await deliver(ctx, notification_id)
        finally:
            idle.put_nowait(ctx)

    results = await asyncio.gather(
        *(one(position, nid) for position, nid in enumerate(notification_ids)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if isinstance(error, StoreUnavailable | asyncio.CancelledError):
            raise error  # the whole chunk goes back to the broker; nothing to requeue here
    if requeued:
        log.warning(
            "chunk start budget (%.0fs) ran out; %d notification(s) queued again",
            chunk_start_budget(contexts[0].settings),
            len(requeued),
        )
        await contexts[0].store.enqueue(deliver_batch_message(requeued))
    if errors:
        # An unexpected error fails the task (and Celery acknowledges it); the ids not started
        # were queued again above, the others each ran their own delivery.
        raise errors[0]
    outcomes = tuple(r for r in results if isinstance(r, DeliveryOutcome))
    return ChunkOutcome(outcomes=outcomes, requeued=tuple(requeued))

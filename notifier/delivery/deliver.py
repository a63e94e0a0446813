"""Delivery: claim a notification, render it, send it over SMTP and record the outcome."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from notifier.compose.addresses import Address
from notifier.compose.mime import OutgoingEmail, build_email
from notifier.compose.rendering import RenderedEmail, TemplateRenderer
from notifier.compose.requests import Notification, parse_request, validate_notification
from notifier.delivery.outcome import DeliveryOutcome
from notifier.delivery.record import record_outcome
from notifier.delivery.screening import (
    record_all_suppressed,
    screen_recipients,
    with_bounce_address,
)
from notifier.delivery.transport import MailSender
from notifier.errors import (
    DeliveryError,
    InvalidNotification,
    PermanentDeliveryError,
    TemplateError,
    TransientDeliveryError,
    describe_error,
)
from notifier.intake import deliver_message, describe, take_request
from notifier.observability.logs import log_context, update_log_context
from notifier.observability.metrics import SMTP_DURATION, count_smtp_reply, template_label
from notifier.settings import Settings
from notifier.storage.store import ClaimResult, NotificationRecord, NotificationStore
from notifier.unsubscribe.sending import list_unsubscribe, notification_category

__all__ = [
    "DeliveryContext",
    "deliver",
    "deliver_request",
    "render_notification",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What delivery needs, built once per worker process."""

    settings: Settings
    store: NotificationStore
    transport: MailSender
    renderer: TemplateRenderer
    sender: Address
    #: DKIM signer (``notifier.delivery.dkim``), applied to the exact bytes sent; None: off.
    signer: Callable[[bytes], bytes] | None = None


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


async def deliver_request(
    ctx: DeliveryContext,
    notification_id: str,
    request_data: Mapping[str, Any],
    *,
    source: str,
) -> DeliveryOutcome:
    """Send a publisher's request that came as a task message, creating its record first.

    Intake creates the record (already claimed when it is to be sent now); an invalid request
    is recorded ``failed`` and comes back as a ``failed`` outcome without an SMTP attempt.
    """
    with log_context(notification_id=notification_id):
        taken = await take_request(
            ctx.store,
            notification_id,
            request_data,
            source=source,
            settings=ctx.settings,
            renderer=ctx.renderer,
        )
        if taken.refused is not None:
            return DeliveryOutcome(
                notification_id,
                "failed",
                taken.refused,
                record_status="failed",
                error=PermanentDeliveryError(taken.refused),
                source=source,
            )
        return await _deliver(ctx, notification_id, taken.claim, taken.notification)


async def deliver(
    ctx: DeliveryContext,
    notification_id: str,
    *,
    claim: ClaimResult | None = None,
    notification: Notification | None = None,
) -> DeliveryOutcome:
    """Send stored notification ``notification_id`` once, however often its task message arrives.

    ``claim`` is a claim already made (intake's create-and-claim), ``notification`` the
    request already validated. An unexpected exception (a bug) is logged and propagates: the
    record stays ``sending`` under its lease and recovery picks it up.
    Every log line inside carries the notification's id (and, once claimed, its template,
    attempt and event id).
    """
    with log_context(notification_id=notification_id):
        return await _deliver(ctx, notification_id, claim, notification)


async def _deliver(
    ctx: DeliveryContext,
    notification_id: str,
    claim: ClaimResult | None,
    notification: Notification | None,
) -> DeliveryOutcome:
    store, settings = ctx.store, ctx.settings
    if claim is None:
        claim = await store.claim(notification_id, lease_seconds=settings.sending_lease_seconds)
    if claim.outcome == "missing":
        log.warning("notification %s has no record (expired or never accepted)", notification_id)
        return DeliveryOutcome(notification_id, "missing", "no record")
    if claim.outcome == "done":
        record = await store.get(notification_id)
        detail = (
            "scheduled: the dispatcher queues it when due"
            if claim.status == "scheduled"
            else f"already {claim.status}"
        )
        return DeliveryOutcome(
            record.id,
            "skipped",
            detail,
            record_status=record.status,
            message_id=record.message_id,
            source=record.source,
            to=record.to,
        )
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
    record_attempt = functools.partial(
        record_outcome, store, settings, record, attempt_number=attempt_number
    )
    try:
        if notification is None:
            notification = validate_notification(
                parse_request(record.payload), settings=settings, renderer=ctx.renderer
            )
        rendered = render_notification(ctx.renderer, notification)
        category = notification_category(ctx.renderer, notification)
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
            list_unsubscribe=list_unsubscribe(settings, notification, category),
            signer=ctx.signer,
        )
    except (InvalidNotification, TemplateError) as exc:
        return await record_attempt(
            message_id=None, error=PermanentDeliveryError(describe_error(exc)), invalid=True
        )

    recipients, suppressed = await screen_recipients(
        store,
        _remaining_recipients(email, record),
        force=notification.request.force,
        category=category,
    )
    if suppressed and not recipients:
        return await record_all_suppressed(store, record, suppressed, message_id=email.message_id)
    email = with_bounce_address(email, settings, notification_id, recipients)
    record_attempt = functools.partial(record_attempt, suppressed=suppressed)
    started = time.monotonic()
    try:
        result = await ctx.transport.send(email, recipients=recipients)
    except DeliveryError as exc:
        kind = "transient" if isinstance(exc, TransientDeliveryError) else "permanent"
        _observe_smtp(started, kind, exc.code)
        return await record_attempt(message_id=email.message_id, error=exc)
    except Exception:
        # Not an SMTP or network error: a bug. Calling it "permanent" would fail the mail for
        # a fault of ours; instead the task fails loudly and the record stays ``sending``
        # under its lease, so recovery delivers it again once the lease ends.
        log.exception(
            "notification %s: unexpected error while sending; left to recovery", notification_id
        )
        raise
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
    return await record_attempt(message_id=email.message_id, result=result)


def _observe_smtp(started: float, outcome: str, code: int | None) -> None:
    SMTP_DURATION.labels(outcome=outcome).observe(time.monotonic() - started)
    count_smtp_reply(code)

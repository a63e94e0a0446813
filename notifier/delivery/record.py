"""Recording what an SMTP attempt did: sent, retrying on the schedule, or failed for good."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from notifier.delivery.backoff import backoff_delay
from notifier.delivery.outcome import DeliveryOutcome
from notifier.delivery.transport import SendResult
from notifier.errors import (
    DeliveryError,
    InvalidTransition,
    PermanentDeliveryError,
    StoreUnavailable,
    TransientDeliveryError,
)
from notifier.intake import deliver_message
from notifier.observability.metrics import (
    DELIVERY_LATENCY,
    FAILED,
    RETRIED,
    SENT,
    template_label,
)
from notifier.settings import Settings
from notifier.storage.store import Attempt, NotificationRecord, NotificationStore
from notifier.webhooks.emit import record_event

__all__ = ["record_budget", "record_outcome"]

log = logging.getLogger(__name__)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def record_budget(settings: Settings) -> float:
    """How long recording an SMTP attempt's outcome may ride out a Redis outage."""
    return max(1.0, min(25.0, settings.task_time_limit - settings.send_timeout - 1.0))


async def _transition(
    store: NotificationStore, settings: Settings, notification_id: str, **transition: Any
) -> None:
    """Apply a transition of a ``sending`` record, riding out a short Redis outage.

    By now the server has answered; giving up here would leave the record ``sending`` and
    make a later delivery send the email again. So retry while Redis is unreachable, for as
    long as the task's time limit allows (the send itself took at most ``SEND_TIMEOUT``) and
    well inside the sending lease (``SEND_TIMEOUT`` + 30 s), so no other delivery takes over.
    """
    deadline = time.monotonic() + record_budget(settings)
    delay, interrupted = 0.1, False
    while True:
        try:
            await store.transition(notification_id, allowed=("sending",), **transition)
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


async def record_outcome(
    store: NotificationStore,
    settings: Settings,
    record: NotificationRecord,
    *,
    attempt_number: int,
    message_id: str | None,
    result: SendResult | None = None,
    error: DeliveryError | None = None,
    invalid: bool = False,
    suppressed: Mapping[str, Mapping[str, Any]] | None = None,
) -> DeliveryOutcome:
    """Record one attempt of a claimed (``sending``) record and say what became of it.

    Pass ``result`` when the server took the message for at least one recipient, else the
    ``error``. A transient error, or recipients deferred with 4xx, schedule a retry while
    attempts remain; ``invalid`` marks a notification that could not even be rendered.
    ``suppressed``: recipients left out for being on the suppression list, kept on the record.
    """
    now = time.time()
    kind: Literal["transient", "permanent"] = (
        "transient" if isinstance(error, TransientDeliveryError) else "permanent"
    )
    if result is not None:
        refusals = _refusal_info(result.refused)
        fields = {
            "message_id": message_id or "",
            "smtp_reply": result.reply,
            "delivered_to": _json(list(dict.fromkeys([*record.delivered_to, *result.accepted]))),
            "refused": _json({**record.refused, **refusals}),
            "lease_until": "",
        }
        attempt = Attempt(
            number=attempt_number,
            at=now,
            outcome="sent",
            code=250,
            message=result.reply,
            refused=refusals,
        )
        deferred = [e for e in result.refused.values() if isinstance(e, TransientDeliveryError)]
        retry_error: TransientDeliveryError | None = None
        if deferred:
            # Some recipients were deferred (4xx): a retry sends to just those.
            retry_error = TransientDeliveryError(
                f"{len(deferred)} recipient(s) deferred: {deferred[0]}",
                code=deferred[0].code,
                recipient=deferred[0].recipient,
            )
    else:
        assert error is not None, "record_outcome needs a result or an error"
        fields = {"reason": str(error), "error_code": str(error.code or ""), "lease_until": ""}
        attempt = Attempt(
            number=attempt_number, at=now, outcome=kind, code=error.code, message=str(error)
        )
        retry_error = error if isinstance(error, TransientDeliveryError) else None

    if suppressed:
        fields["suppressed"] = _json({**record.suppressed, **suppressed})
    template = template_label(record.template)
    if retry_error is not None and attempt_number < settings.retry_max_attempts:
        delay = backoff_delay(
            attempt_number, base=settings.retry_backoff_base, cap=settings.retry_backoff_max
        )
        fields["reason"] = str(retry_error)
        event = record_event(
            "deferred",
            record,
            at=now,
            attempt=attempt_number,
            smtp_code=retry_error.code,
            smtp_message=str(retry_error),
        )
        await _transition(
            store,
            settings,
            record.id,
            to="retrying",
            fields=fields,
            attempt=attempt,
            action="schedule",
            message=deliver_message(record.id, retries=attempt_number),
            due=now + delay,
            now=now,
            events=[event.to_json()],
        )
        RETRIED.labels(template=template, reason="transient").inc()
        log.warning(
            "notification %s attempt %d: %s; retrying in %.1fs",
            record.id,
            attempt_number,
            retry_error,
            delay,
        )
        return DeliveryOutcome(
            record.id,
            "retrying",
            str(retry_error),
            record_status="retrying",
            message_id=message_id,
            retry_in=delay,
            error=retry_error,
            source=record.source,
            to=record.to,
        )

    if result is not None:
        fields["sent_at"] = repr(now)
        if result.refused:
            fields["reason"] = "; ".join(f"{a}: {e}" for a, e in result.refused.items())
        event = record_event(
            "sent", record, at=now, attempt=attempt_number, smtp_code=250, smtp_message=result.reply
        )
        await _transition(
            store,
            settings,
            record.id,
            to="sent",
            fields=fields,
            attempt=attempt,
            now=now,
            events=[event.to_json()],
        )
        SENT.labels(template=template).inc()
        DELIVERY_LATENCY.labels(template=template).observe(max(0.0, now - record.created_at))
        return DeliveryOutcome(
            record.id,
            "sent",
            result.reply,
            record_status="sent",
            message_id=message_id,
            source=record.source,
            to=record.to,
        )

    assert error is not None
    if retry_error is not None:
        error = TransientDeliveryError(
            f"gave up after {attempt_number} attempts: {error}",
            code=error.code,
            recipient=error.recipient,
        )
        fields["reason"] = str(error)
    fields["message_id"] = message_id or ""
    event = record_event(
        "failed",
        record,
        at=now,
        attempt=attempt_number,
        smtp_code=error.code,
        smtp_message=str(error),
    )
    await _transition(
        store,
        settings,
        record.id,
        to="failed",
        fields=fields,
        attempt=attempt,
        now=now,
        events=[event.to_json()],
    )
    FAILED.labels(template=template, reason="invalid" if invalid else kind).inc()
    log.error("notification %s failed for good: %s", record.id, error)
    return DeliveryOutcome(
        record.id,
        "failed",
        str(error),
        record_status="failed",
        message_id=message_id,
        error=error,
        source=record.source,
        to=record.to,
    )

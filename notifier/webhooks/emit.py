"""Emitting webhook events from the mail path: one LPUSH onto the inbox, fanned out later."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from notifier.compose.requests import Notification
from notifier.errors import StoreUnavailable
from notifier.storage.keys import Keys
from notifier.storage.redis import map_redis_errors
from notifier.storage.store import NotificationRecord
from notifier.webhooks.events import WebhookEvent, notification_event
from notifier.webhooks.metrics import WEBHOOK_EVENTS_LOST

__all__ = ["accepted_event", "emit", "record_event"]

log = logging.getLogger(__name__)


async def emit(redis: aioredis.Redis, keys: Keys, *events: WebhookEvent) -> None:
    """Queue events for the webhook fan-out (``notifier.webhooks.pump``).

    Called right after the record write it reports. One round trip, whether or not any
    endpoint exists: the pump decides who gets it. If Redis fails here the record is written
    but its event is lost; that is logged and counted, never raised into the mail path. The
    mail path's own events avoid both the round trip and the window: they go to the store
    write they report (``events=``), and its script pushes them (``scripts/prelude.lua``).
    """
    if not events:
        return
    try:
        with map_redis_errors():
            await redis.lpush(keys.webhook_inbox, *(event.to_json() for event in events))
    except StoreUnavailable as exc:
        for event in events:
            WEBHOOK_EVENTS_LOST.labels(type=event.type).inc()
        log.warning("webhook event(s) %s not queued: %s", [e.type for e in events], exc)


def record_event(
    kind: str,
    record: NotificationRecord,
    *,
    at: float,
    attempt: int | None = None,
    smtp_code: int | None = None,
    smtp_message: str | None = None,
    discriminator: str = "",
) -> WebhookEvent:
    """``notification.<kind>`` about a stored record (to emit, or to pass to a store write's
    ``events`` so it is queued in the same step as the write)."""
    return notification_event(
        kind,
        notification_id=record.id,
        template=record.template,
        recipients=record.to,
        owner=record.owner,
        attempt=attempt,
        smtp_code=smtp_code,
        smtp_message=smtp_message,
        event_id=record.event_id,
        at=at,
        discriminator=discriminator,
    )


def accepted_event(
    notification_id: str,
    notification: Notification,
    *,
    owner: str | None,
    at: float,
    event_id: str | None = None,
) -> WebhookEvent:
    """``notification.accepted`` for a notification just stored."""
    return notification_event(
        "accepted",
        notification_id=notification_id,
        template=notification.request.template,
        recipients=[str(address) for address in notification.to],
        owner=owner,
        event_id=event_id,
        at=at,
    )

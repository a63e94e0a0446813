"""At send time: leave suppressed recipients out, and sign the envelope sender (VERP); the
suppression list and VERP tokens themselves live in notifier.bounces and notifier.storage."""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from notifier.bounces.metrics import SUPPRESSED, SUPPRESSION_LIST_SIZE
from notifier.bounces.verp import bounce_address
from notifier.compose.mime import OutgoingEmail
from notifier.compose.templates import TRANSACTIONAL
from notifier.delivery.outcome import DeliveryOutcome
from notifier.errors import StoreUnavailable
from notifier.settings import Settings
from notifier.storage.store import NotificationRecord, NotificationStore
from notifier.storage.suppressions import SuppressionStore
from notifier.webhooks.emit import record_event

__all__ = [
    "record_all_suppressed",
    "refresh_suppression_gauge",
    "screen_recipients",
    "with_bounce_address",
]

log = logging.getLogger(__name__)

_STORES: weakref.WeakKeyDictionary[aioredis.Redis, SuppressionStore] = weakref.WeakKeyDictionary()


def _suppressions(store: NotificationStore) -> SuppressionStore:
    # One per Redis client (a worker process has one): the scripts are registered once.
    found = _STORES.get(store.redis)
    if found is None:
        found = _STORES[store.redis] = SuppressionStore(store.redis, prefix=store.keys.prefix)
    return found


async def screen_recipients(
    store: NotificationStore,
    recipients: tuple[str, ...],
    *,
    force: bool,
    category: str | None = None,
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """The recipients to send to, and those left out: address -> reason, source, note.

    ``force`` (a request from an admin-scope key) sends to everyone. ``transactional`` mail
    is never stopped by an unsubscribe, only by a bounce, complaint or manual entry.
    """
    if force or not recipients:
        return recipients, {}
    if category == TRANSACTIONAL:
        category = None
    entries = await _suppressions(store).matching(recipients, category=category)
    if category is None:
        entries = {a: e for a, e in entries.items() if e.reason != "unsubscribe"}
    if not entries:
        return recipients, {}
    left_out = {
        address: {"reason": entry.reason, "source": entry.source, "since": entry.created}
        for address, entry in entries.items()
    }
    for info in left_out.values():
        SUPPRESSED.labels(reason=info["reason"]).inc()
    return tuple(r for r in recipients if r not in entries), left_out


def with_bounce_address(
    email: OutgoingEmail, settings: Settings, notification_id: str, recipients: tuple[str, ...]
) -> OutgoingEmail:
    """``email`` with envelope sender ``bounces+TOKEN@BOUNCE_DOMAIN`` when BOUNCE_DOMAIN is set.

    The token names the recipient too when there is exactly one; the visible From stays.
    """
    if not settings.bounce_domain:
        return email
    sender = bounce_address(
        notification_id,
        recipients[0] if len(recipients) == 1 else None,
        domain=settings.bounce_domain,
        secret=settings.signing_secret,
    )
    return dataclasses.replace(email, envelope_from=sender)


async def record_all_suppressed(
    store: NotificationStore,
    record: NotificationRecord,
    suppressed: Mapping[str, Mapping[str, Any]],
    *,
    message_id: str | None,
) -> DeliveryOutcome:
    """Every remaining recipient is suppressed: end ``suppressed``, no SMTP transaction.

    A retry whose deferred recipients were suppressed meanwhile ends ``sent`` instead, when an
    earlier attempt delivered to the others.
    """
    now = time.time()
    reasons = ", ".join(f"{a} ({info['reason']})" for a, info in suppressed.items())
    detail = f"every remaining recipient is on the suppression list: {reasons}"
    status: Literal["sent", "suppressed"] = "sent" if record.delivered_to else "suppressed"
    fields = {
        "suppressed": orjson.dumps({**record.suppressed, **suppressed}).decode(),
        "reason": detail,
        "lease_until": "",
    }
    if status == "suppressed":
        fields["message_id"] = message_id or ""
    else:
        fields["sent_at"] = repr(now)
    events = (
        [record_event("suppressed", record, at=now, smtp_message=detail).to_json()]
        if status == "suppressed"
        else []
    )
    await store.transition(
        record.id, allowed=("sending",), to=status, fields=fields, now=now, events=events
    )
    log.info("notification %s %s: %s", record.id, status, detail)
    return DeliveryOutcome(
        record.id,
        status,
        detail,
        record_status=status,
        message_id=message_id if status == "suppressed" else record.message_id,
        source=record.source,
        to=record.to,
    )


async def refresh_suppression_gauge(store: NotificationStore) -> None:
    """Set ``notifier_suppression_list_size`` from Redis (called when metrics are scraped)."""
    try:
        SUPPRESSION_LIST_SIZE.set(await _suppressions(store).size())
    except StoreUnavailable:
        return

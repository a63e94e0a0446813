"""Applying bounces and complaints: on the notification's record, and to the suppression list."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from email.utils import getaddresses

from notifier.bounces.events import (
    FeedbackEvent,
    normalize_address,
    notification_id_from_message_id,
)
from notifier.bounces.metrics import BOUNCES, COMPLAINTS
from notifier.bounces.verp import VerpToken, parse_bounce_address
from notifier.settings import Settings
from notifier.storage.store import NotificationRecord, NotificationStore
from notifier.storage.suppressions import FeedbackOutcome, SuppressionEntry, SuppressionStore
from notifier.webhooks.emit import emit
from notifier.webhooks.events import notification_event

__all__ = ["AppliedFeedback", "FeedbackProcessor"]

log = logging.getLogger(__name__)

_BOUNCE_TYPE = {"hard_bounce": "hard", "soft_bounce": "soft", "delayed": "delayed"}


@dataclass(frozen=True, slots=True)
class AppliedFeedback:
    """What one event changed: ``duplicate`` when it had been applied before."""

    outcome: str
    notification_id: str | None
    recipient: str | None
    suppressed: bool = False


class FeedbackProcessor:
    """Turns :class:`FeedbackEvent` values into record events and suppression entries."""

    def __init__(
        self,
        *,
        notifications: NotificationStore,
        suppressions: SuppressionStore,
        settings: Settings,
    ) -> None:
        self.notifications = notifications
        self.suppressions = suppressions
        self.settings = settings

    def verp_token(self, envelope_to: tuple[str, ...]) -> VerpToken | None:
        """The first valid VERP token among the addresses the report was sent to."""
        if not self.settings.bounce_domain:
            return None
        for address in envelope_to:
            token = parse_bounce_address(
                address,
                domain=self.settings.bounce_domain,
                secret=self.settings.signing_secret,
            )
            if token is not None:
                return token
        return None

    async def _resolve(self, event: FeedbackEvent) -> tuple[NotificationRecord | None, str | None]:
        token = self.verp_token(event.envelope_to)
        record: NotificationRecord | None = None
        for candidate in (event.notification_id, token.notification_id if token else None):
            if candidate:
                record = await self.notifications.find(candidate)
                if record is not None:
                    break
        if record is None and event.message_id:
            candidate = notification_id_from_message_id(event.message_id)
            found = await self.notifications.find(candidate) if candidate else None
            # Any Message-ID parses: only a record that really had this one counts.
            if found is not None and found.message_id == event.message_id.strip():
                record = found
        recipient = event.recipient
        if record is not None and token is not None and token.recipient_digest is not None:
            # What notifier sent to, even when the DSN names an address it was forwarded to.
            for sent_to in _record_addresses(record):
                if token.matches(sent_to):
                    recipient = sent_to
                    break
        return record, recipient

    async def apply(self, event: FeedbackEvent, *, now: float | None = None) -> AppliedFeedback:
        """Record the event once; a replay (same dedupe key) changes nothing."""
        now = time.time() if now is None else now
        record, recipient = await self._resolve(event)
        notification_id = record.id if record is not None else None
        entry = None
        if recipient is not None and event.kind != "delayed":
            limit = self.settings.soft_bounce_limit
            note = event.diagnostic or ""
            if event.kind == "soft_bounce":
                note = f"{limit} soft bounces within {self.settings.soft_bounce_window:g}s; " + note
            entry = SuppressionEntry(
                address=normalize_address(recipient),
                reason="complaint" if event.kind == "complaint" else "hard_bounce",
                source=event.source,
                created=now,
                note=note[:500].strip(" ;"),
            )
        payload = {
            "type": event.type,
            "at": event.occurred_at or now,
            "recipient": recipient,
            "status": event.status,
            "diagnostic": event.diagnostic,
            "source": event.source,
        }
        outcome: FeedbackOutcome = await self.suppressions.apply_feedback(
            dedupe_key=event.dedupe_key,
            kind=event.kind,
            event=payload,
            notification_id=notification_id if event.kind != "delayed" else None,
            address=recipient,
            entry=entry,
            soft_window=self.settings.soft_bounce_window,
            soft_limit=self.settings.soft_bounce_limit,
            now=now,
        )
        if outcome.outcome == "applied":
            if event.kind == "complaint":
                COMPLAINTS.labels(event.source).inc()
            else:
                BOUNCES.labels(_BOUNCE_TYPE[event.kind]).inc()
            log.info(
                "%s from %s for notification %s%s",
                event.type,
                event.source,
                notification_id or "(unknown)",
                "; recipient suppressed" if outcome.suppressed else "",
            )
            if record is not None and event.kind != "delayed":
                await emit(
                    self.notifications.redis,
                    self.notifications.keys,
                    notification_event(
                        event.type,
                        notification_id=record.id,
                        template=record.template,
                        recipients=[recipient] if recipient else record.to,
                        owner=record.owner,
                        smtp_code=_smtp_code(event.diagnostic),
                        smtp_message=event.diagnostic,
                        event_id=record.event_id,
                        at=now,
                        extra={"status": event.status, "source": event.source},
                        discriminator=event.dedupe_key,
                    ),
                )
        return AppliedFeedback(
            outcome=outcome.outcome,
            notification_id=notification_id,
            recipient=recipient,
            suppressed=outcome.suppressed,
        )


def _smtp_code(diagnostic: str | None) -> int | None:
    """The SMTP reply code a DSN's diagnostic quotes (``smtp; 550 5.1.1 ...``), if any."""
    match = re.search(r"\b([45]\d\d)\b", diagnostic or "")
    return int(match.group(1)) if match else None


def _record_addresses(record: NotificationRecord) -> list[str]:
    found = []
    for _, address in getaddresses([*record.to, *record.cc, *record.bcc]):
        try:
            found.append(normalize_address(address))
        except ValueError:
            continue
    return found

"""Provider webhooks (SES via SNS, SendGrid, Postmark) normalised to :class:`FeedbackEvent`.

Pure functions over the decoded JSON: the route has checked the signature already. Event kinds
the suppression list has no use for (deliveries, opens, auto-replies) give no event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from notifier.bounces.events import FeedbackEvent, FeedbackKind, normalize_address, status_class

__all__ = ["postmark_events", "sendgrid_events", "ses_events"]

#: Postmark bounce types that mean the address will never work, and ones that may recover.
_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}


def _address(value: object) -> str | None:
    try:
        return normalize_address(str(value)) if value else None
    except ValueError:
        return None


def _timestamp(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _text(value: object) -> str | None:
    return str(value).strip() or None if value is not None else None


def ses_events(notification: Mapping[str, Any]) -> list[FeedbackEvent]:
    """Events from an SES notification (the JSON inside an SNS ``Message``)."""
    kind_name = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    headers = mail.get("commonHeaders") or {}
    message_id = _text(headers.get("messageId"))
    source = _text(mail.get("source"))
    envelope = (source,) if source else ()
    events: list[FeedbackEvent] = []
    if kind_name == "Bounce":
        bounce = notification.get("bounce") or {}
        bounce_type = bounce.get("bounceType")
        feedback_id = bounce.get("feedbackId") or mail.get("messageId")
        for item in bounce.get("bouncedRecipients") or []:
            recipient = _address(item.get("emailAddress"))
            status = status_class(_text(item.get("status")), _text(item.get("diagnosticCode")))
            kind: FeedbackKind = "hard_bounce" if bounce_type == "Permanent" else "soft_bounce"
            events.append(
                FeedbackEvent(
                    kind=kind,
                    recipient=recipient,
                    source="ses",
                    dedupe_key=f"ses|{feedback_id}|{recipient}|{kind}",
                    status=status,
                    diagnostic=_text(item.get("diagnosticCode")),
                    message_id=message_id,
                    envelope_to=envelope,
                    occurred_at=_timestamp(bounce.get("timestamp")),
                    details={"bounce_type": bounce_type, "subtype": bounce.get("bounceSubType")},
                )
            )
    elif kind_name == "Complaint":
        complaint = notification.get("complaint") or {}
        feedback_id = complaint.get("feedbackId") or mail.get("messageId")
        for item in complaint.get("complainedRecipients") or []:
            recipient = _address(item.get("emailAddress"))
            events.append(
                FeedbackEvent(
                    kind="complaint",
                    recipient=recipient,
                    source="ses",
                    dedupe_key=f"ses|{feedback_id}|{recipient}|complaint",
                    diagnostic=_text(complaint.get("complaintFeedbackType")) or "abuse",
                    message_id=message_id,
                    envelope_to=envelope,
                    occurred_at=_timestamp(complaint.get("timestamp")),
                )
            )
    return [event for event in events if event.recipient is not None]


def sendgrid_events(batch: Sequence[Mapping[str, Any]]) -> list[FeedbackEvent]:
    """Events from a SendGrid Event Webhook POST (a JSON array of events)."""
    events: list[FeedbackEvent] = []
    for item in batch:
        name = item.get("event")
        recipient = _address(item.get("email"))
        if recipient is None:
            continue
        kind: FeedbackKind
        if name == "bounce":
            # SendGrid's "blocked" bounces are refusals that may lift (reputation, content).
            kind = "soft_bounce" if item.get("type") == "blocked" else "hard_bounce"
        elif name == "spamreport":
            kind = "complaint"
        elif name == "deferred":
            kind = "delayed"
        else:
            continue
        reason = _text(item.get("reason")) or _text(item.get("response"))
        smtp_id = _text(item.get("smtp-id"))
        events.append(
            FeedbackEvent(
                kind=kind,
                recipient=recipient,
                source="sendgrid",
                dedupe_key=f"sendgrid|{item.get('sg_event_id') or smtp_id}|{recipient}|{kind}",
                status=status_class(_text(item.get("status")), reason),
                diagnostic=reason,
                notification_id=_text(item.get("notification_id")),
                message_id=smtp_id,
                occurred_at=_timestamp(item.get("timestamp")),
            )
        )
    return events


def postmark_events(payload: Mapping[str, Any]) -> list[FeedbackEvent]:
    """Events from a Postmark bounce or spam-complaint webhook."""
    record_type = payload.get("RecordType")
    bounce_type = str(payload.get("Type") or "")
    recipient = _address(payload.get("Email"))
    if recipient is None:
        return []
    kind: FeedbackKind
    if record_type == "SpamComplaint" or bounce_type == "SpamComplaint":
        kind = "complaint"
    elif record_type == "Bounce" and bounce_type in _POSTMARK_HARD:
        kind = "hard_bounce"
    elif record_type == "Bounce" and bounce_type in _POSTMARK_SOFT:
        kind = "soft_bounce"
    else:
        return []
    metadata = payload.get("Metadata") or {}
    details = _text(payload.get("Details")) or _text(payload.get("Description"))
    return [
        FeedbackEvent(
            kind=kind,
            recipient=recipient,
            source="postmark",
            dedupe_key=f"postmark|{payload.get('ID')}|{recipient}|{kind}",
            status=status_class(None, details),
            diagnostic=details,
            notification_id=_text(metadata.get("notification_id"))
            if isinstance(metadata, Mapping)
            else None,
            occurred_at=_timestamp(payload.get("BouncedAt")),
            details={"type": bounce_type},
        )
    ]

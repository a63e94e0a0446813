"""Webhook events: their types, and payloads in the Standard Webhooks shape.

A payload is ``{"type", "timestamp", "data"}``; ``data`` names the notification and what happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "ENDPOINT_DISABLED",
    "EVENT_IGNORED",
    "EVENT_TYPES",
    "NOTIFICATION_EVENTS",
    "QueuedEvent",
    "WebhookEvent",
    "endpoint_disabled_event",
    "ignored_event",
    "notification_event",
]

#: What can happen to a notification, as ``notification.<kind>`` events.
NOTIFICATION_EVENTS = (
    "notification.accepted",
    "notification.sent",
    #: A transient failure: it will be retried.
    "notification.deferred",
    "notification.failed",
    "notification.bounced",
    "notification.soft_bounced",
    "notification.complained",
    "notification.suppressed",
    "notification.cancelled",
)
#: A published event that no routing rule matched.
EVENT_IGNORED = "event.ignored"
#: An endpoint was disabled (410 Gone, or failing for WEBHOOK_DISABLE_AFTER).
ENDPOINT_DISABLED = "endpoint.disabled"
EVENT_TYPES: tuple[str, ...] = (*NOTIFICATION_EVENTS, EVENT_IGNORED, ENDPOINT_DISABLED)

# Message ids are derived from what happened, so emitting the same fact twice (a task run
# again after a crash) gives the same ``webhook-id`` and receivers can drop the repeat.
_ID_NAMESPACE = uuid.UUID("6f1c9a52-3f0e-4d8e-9a1b-2f3c4d5e6f70")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event, before it is fanned out to endpoints.

    ``owner`` is the API key that created the notification (or published the event); only its
    endpoints, and those of admin keys, receive it. It is not part of the payload.
    """

    id: str
    type: str
    at: float
    data: Mapping[str, Any]
    owner: str | None = None

    def body(self) -> str:
        """The JSON body sent to every endpoint: the same bytes each time (it is signed)."""
        payload = {"type": self.type, "timestamp": _iso(self.at), "data": dict(self.data)}
        return orjson.dumps(payload).decode()

    def to_json(self) -> str:
        """How the event waits in Redis for the fan-out."""
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type,
                "at": self.at,
                "owner": self.owner,
                "body": self.body(),
            }
        ).decode()


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An event read back from the inbox: what the fan-out needs."""

    id: str
    type: str
    at: float
    owner: str | None
    body: str
    raw: str = field(repr=False, default="")

    @classmethod
    def from_json(cls, raw: str) -> QueuedEvent:
        data = orjson.loads(raw)
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            at=float(data["at"]),
            owner=data.get("owner") or None,
            body=str(data["body"]),
            raw=raw,
        )


def _message_id(*parts: object) -> str:
    return "msg_" + uuid.uuid5(_ID_NAMESPACE, "\n".join(map(str, parts))).hex


def notification_event(
    kind: str,
    *,
    notification_id: str,
    template: str | None,
    recipients: Sequence[str],
    owner: str | None,
    attempt: int | None = None,
    smtp_code: int | None = None,
    smtp_message: str | None = None,
    event_id: str | None = None,
    at: float,
    extra: Mapping[str, Any] | None = None,
    discriminator: str = "",
) -> WebhookEvent:
    """A ``notification.<kind>`` event.

    ``discriminator`` tells apart events of one kind about one notification that are not the
    same fact (two bounces from different recipients); the attempt number already does so
    for sends.
    """
    event_type = f"notification.{kind}"
    if event_type not in NOTIFICATION_EVENTS:
        raise ValueError(f"unknown notification event {kind!r}")
    data: dict[str, Any] = {
        "notification_id": notification_id,
        "template": template,
        "recipient": recipients[0] if recipients else None,
        "recipients": list(recipients),
        "attempt": attempt,
        "smtp_code": smtp_code,
        "smtp_message": smtp_message,
        "event_id": event_id,
        **(extra or {}),
    }
    return WebhookEvent(
        id=_message_id(event_type, notification_id, attempt, discriminator),
        type=event_type,
        at=at,
        data=data,
        owner=owner,
    )


def ignored_event(
    *, event_id: str | None, event_type: str, source: str | None, owner: str | None, at: float
) -> WebhookEvent:
    """``event.ignored``: a published event no rule matched."""
    return WebhookEvent(
        id=_message_id(EVENT_IGNORED, source, event_id or uuid.uuid4().hex, event_type),
        type=EVENT_IGNORED,
        at=at,
        data={"event_id": event_id, "event_type": event_type, "source": source},
        owner=owner,
    )


def endpoint_disabled_event(
    *, endpoint_id: str, url: str, reason: str, owner: str | None, at: float
) -> WebhookEvent:
    """``endpoint.disabled``: sent to the owner's other endpoints (and admins')."""
    return WebhookEvent(
        id=_message_id(ENDPOINT_DISABLED, endpoint_id, at),
        type=ENDPOINT_DISABLED,
        at=at,
        data={"endpoint_id": endpoint_id, "url": url, "reason": reason},
        owner=owner,
    )

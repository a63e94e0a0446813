"""Notification records and the values the store hands back, parsed from Redis replies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = [
    "PENDING",
    "STATUSES",
    "AcceptItem",
    "AcceptResult",
    "Attempt",
    "ClaimResult",
    "NotificationRecord",
    "RecordPage",
    "Status",
    "parse_accept_reply",
    "parse_claim_reply",
]

Status = Literal[
    "queued", "scheduled", "sending", "retrying", "sent", "failed", "cancelled", "suppressed"
]
STATUSES: tuple[Status, ...] = (
    "queued",
    "scheduled",
    "sending",
    "retrying",
    "sent",
    "failed",
    "cancelled",
    #: Every recipient was on the suppression list: nothing was sent, nothing will be.
    "suppressed",
)
#: Statuses from which a notification may still be sent.
PENDING: tuple[Status, ...] = ("queued", "scheduled", "retrying")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One SMTP attempt as recorded."""

    number: int
    at: float
    outcome: Literal["sent", "transient", "permanent"]
    code: int | None = None
    message: str = ""
    refused: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "number": self.number,
                "at": self.at,
                "outcome": self.outcome,
                "code": self.code,
                "message": self.message,
                "refused": dict(self.refused),
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Attempt:
        data = orjson.loads(raw)
        return cls(
            number=data["number"],
            at=data["at"],
            outcome=data["outcome"],
            code=data.get("code"),
            message=data.get("message", ""),
            refused=data.get("refused") or {},
        )


def _float(value: str | None) -> float | None:
    return float(value) if value else None


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """Everything known about one notification."""

    id: str
    status: Status
    source: str
    template: str | None
    locale: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    created_at: float
    updated_at: float
    sent_at: float | None
    send_at: float | None
    message_id: str | None
    smtp_reply: str | None
    reason: str | None
    error_code: int | None
    attempt_count: int
    metadata: Mapping[str, str]
    payload: Mapping[str, Any]
    delivered_to: tuple[str, ...]
    refused: Mapping[str, Mapping[str, Any]]
    event_id: str | None
    attempts: tuple[Attempt, ...] = ()
    #: The API key name that created it (None: created by a Celery publisher or an open API).
    owner: str | None = None
    #: Recipients left out because they are on the suppression list: address -> reason, source.
    suppressed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Bounces and complaints received about it (``bounced``, ``soft_bounced``, ``complained``).
    feedback: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_hash(
        cls, data: Mapping[str, str], attempts: Sequence[str] = (), feedback: Sequence[str] = ()
    ) -> NotificationRecord:
        def json_field(name: str, default: Any) -> Any:
            raw = data.get(name)
            return orjson.loads(raw) if raw else default

        code = data.get("error_code")
        return cls(
            id=data["id"],
            status=data["status"],  # type: ignore[arg-type]
            source=data.get("source", "api"),
            template=data.get("template") or None,
            locale=data.get("locale") or None,
            to=tuple(json_field("to", [])),
            cc=tuple(json_field("cc", [])),
            bcc=tuple(json_field("bcc", [])),
            created_at=float(data["created_at"]),
            updated_at=float(data.get("updated_at") or data["created_at"]),
            sent_at=_float(data.get("sent_at")),
            send_at=_float(data.get("send_at")),
            message_id=data.get("message_id") or None,
            smtp_reply=data.get("smtp_reply") or None,
            reason=data.get("reason") or None,
            error_code=int(code) if code else None,
            attempt_count=int(data.get("attempt_count") or 0),
            metadata=json_field("metadata", {}),
            payload=json_field("payload", {}),
            delivered_to=tuple(json_field("delivered_to", [])),
            refused=json_field("refused", {}),
            event_id=data.get("event_id") or None,
            attempts=tuple(Attempt.from_json(raw) for raw in attempts),
            owner=data.get("owner") or None,
            suppressed=json_field("suppressed", {}),
            feedback=tuple(orjson.loads(raw) for raw in feedback),
        )


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What happened to a notification handed to the store."""

    id: str
    status: str
    #: False when the id or idempotency key was already known and nothing new was queued.
    created: bool
    #: The stored idempotency value (``id|fingerprint``) when the key was seen before.
    idempotency_value: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of asking to send a notification now."""

    outcome: Literal["claimed", "missing", "busy", "done"]
    status: str | None = None
    record: NotificationRecord | None = None
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class RecordPage:
    records: tuple[NotificationRecord, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AcceptItem:
    """One notification for :meth:`NotificationStore.accept_many` (arguments as ``accept``)."""

    notification_id: str
    fields: Mapping[str, str]
    message: bytes | None = None
    due: float | None = None
    idempotency_key: str | None = None
    idempotency_value: str = ""
    idempotency_ttl: int = 86400
    #: Webhook events (JSON) queued for the fan-out with the record, only if it is created.
    events: tuple[str, ...] = ()


def parse_accept_reply(notification_id: str, reply: list[Any]) -> AcceptResult:
    """The AcceptResult of the ``accept`` script's reply."""
    kind = reply[0]
    if kind == "duplicate":
        original_id = reply[1].split("|", 1)[0]
        return AcceptResult(
            id=original_id, status="duplicate", created=False, idempotency_value=reply[1]
        )
    return AcceptResult(id=notification_id, status=reply[1], created=kind == "accepted")


def parse_claim_reply(reply: list[Any]) -> ClaimResult:
    """The ClaimResult of a claiming script's reply (a claiming transition, create-and-claim)."""
    kind = reply[0]
    if kind == "missing":
        return ClaimResult(outcome="missing")
    if kind == "busy":
        return ClaimResult(outcome="busy", status="sending", lease_until=float(reply[1]))
    if kind == "refused":
        return ClaimResult(outcome="done", status=str(reply[1]))
    flat = reply[2]
    data = dict(zip(flat[::2], flat[1::2], strict=True))
    return ClaimResult(
        outcome="claimed", status=str(reply[1]), record=NotificationRecord.from_hash(data)
    )

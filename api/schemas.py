"""Response bodies (documented in OpenAPI with examples) and record serialisation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from notifier.storage.store import Attempt, NotificationRecord

__all__ = [
    "ID_PATTERN",
    "Accepted",
    "BatchItemResult",
    "BatchRequest",
    "BatchResponse",
    "NotificationOut",
    "NotificationPage",
    "RecordId",
    "RenderRequest",
    "RenderedOut",
    "TemplateList",
    "TemplateOut",
    "attempt_json",
    "iso",
    "record_json",
]

_ID_EXAMPLE = "7d2f1c9e-3b8a-4f61-9a57-0c2e8b4d1a66"

#: A notification or task id: a UUID as notifier makes them, or a publisher's own Celery task
#: id. No ':' (which would reach a record's sub-keys) and nothing a Redis key must not hold.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,199}$"
RecordId = Annotated[str, Path(pattern=ID_PATTERN, description="A notification or task id (UUID).")]


def iso(timestamp: float | None) -> str | None:
    """A Unix timestamp as ISO 8601 in UTC."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "at": iso(attempt.at),
        "outcome": attempt.outcome,
        "code": attempt.code,
        "message": attempt.message,
        "refused": dict(attempt.refused),
    }


def record_json(record: NotificationRecord) -> dict[str, Any]:
    """A record as the API shows it (bcc included: this is the operator's view)."""
    return {
        "id": record.id,
        "status": record.status,
        "template": record.template,
        "locale": record.locale,
        "to": list(record.to),
        "cc": list(record.cc),
        "bcc": list(record.bcc),
        "metadata": dict(record.metadata),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "sent_at": iso(record.sent_at),
        "send_at": iso(record.send_at),
        "message_id": record.message_id,
        "smtp_reply": record.smtp_reply,
        "reason": record.reason,
        "error_code": record.error_code,
        "attempts": [attempt_json(a) for a in record.attempts],
        "delivered_to": list(record.delivered_to),
        "refused": dict(record.refused),
        "event_id": record.event_id,
        "owner": record.owner,
        **feedback_json(record),
    }


def feedback_json(record: NotificationRecord) -> dict[str, Any]:
    """Suppressed recipients and the bounces and complaints received, with their times."""
    events = [
        {**event, "at": iso(event.get("at"))} for event in record.feedback if event.get("type")
    ]

    def first(kind: str) -> str | None:
        return next((event["at"] for event in events if event["type"] == kind), None)

    return {
        "suppressed": {address: dict(info) for address, info in record.suppressed.items()},
        "bounced_at": first("bounced"),
        "soft_bounce_count": sum(1 for event in events if event["type"] == "soft_bounced"),
        "complained_at": first("complained"),
        "feedback": events,
    }


class Accepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": _ID_EXAMPLE, "status": "queued"}]}
    )

    id: str
    status: str = Field(description="'queued', or 'scheduled' when send_at is in the future.")


class AttemptOut(BaseModel):
    number: int
    at: str
    outcome: Literal["sent", "transient", "permanent"]
    code: int | None
    message: str
    refused: dict[str, Any]


class NotificationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _ID_EXAMPLE,
                    "status": "sent",
                    "template": "welcome",
                    "locale": "en",
                    "to": ["Ada <ada@example.com>"],
                    "cc": [],
                    "bcc": [],
                    "metadata": {"user_id": "42"},
                    "created_at": "2025-01-01T10:00:00.000000Z",
                    "updated_at": "2025-01-01T10:00:00.420000Z",
                    "sent_at": "2025-01-01T10:00:00.420000Z",
                    "send_at": None,
                    "message_id": f"<{_ID_EXAMPLE}@example.com>",
                    "smtp_reply": "250 2.0.0 Ok: queued as 4F2A1",
                    "reason": None,
                    "error_code": None,
                    "attempts": [
                        {
                            "number": 1,
                            "at": "2025-01-01T10:00:00.410000Z",
                            "outcome": "sent",
                            "code": 250,
                            "message": "Ok: queued as 4F2A1",
                            "refused": {},
                        }
                    ],
                    "delivered_to": ["ada@example.com"],
                    "refused": {},
                    "event_id": None,
                    "owner": "billing",
                }
            ]
        }
    )

    id: str
    status: str
    template: str | None
    locale: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    metadata: dict[str, str]
    created_at: str
    updated_at: str
    sent_at: str | None
    send_at: str | None
    message_id: str | None
    smtp_reply: str | None
    reason: str | None
    error_code: int | None
    attempts: list[AttemptOut]
    delivered_to: list[str]
    refused: dict[str, Any]
    event_id: str | None
    owner: str | None = Field(
        None, description="Name of the API key that created it (None: a Celery publisher)."
    )
    suppressed: dict[str, Any] = Field(
        default_factory=dict,
        description="Recipients left out because they are on the suppression list, with why.",
    )
    bounced_at: str | None = Field(None, description="When the first hard bounce arrived.")
    soft_bounce_count: int = Field(0, description="Soft bounces received.")
    complained_at: str | None = Field(None, description="When a spam complaint arrived.")
    feedback: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Each bounce or complaint: type (bounced, soft_bounced, complained), at, "
        "recipient, status, diagnostic, source.",
    )


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class BatchRequest(BaseModel):
    """Up to MAX_BATCH_SIZE notifications; each item is validated on its own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "notifications": [
                        {
                            "to": "ada@example.com",
                            "template": "welcome",
                            "context": {"name": "Ada", "login_url": "https://example.com/login"},
                        },
                        {
                            "to": ["grace@example.com"],
                            "subject": "Your report is ready",
                            "text": "Download it from the dashboard.",
                        },
                    ]
                }
            ]
        },
    )

    notifications: list[dict[str, Any]] = Field(
        min_length=1,
        description="Each item has the body of POST /api/v1/notifications.",
    )


class BatchItemResult(BaseModel):
    index: int
    id: str | None = None
    status: Literal["queued", "scheduled", "rejected", "unavailable"]
    errors: list[dict[str, str | None]] | None = None


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 1,
                    "rejected": 1,
                    "results": [
                        {"index": 0, "id": _ID_EXAMPLE, "status": "queued"},
                        {
                            "index": 1,
                            "status": "rejected",
                            "errors": [{"field": "to[0]", "message": "not a valid address"}],
                        },
                    ],
                }
            ]
        }
    )

    accepted: int
    rejected: int
    results: list[BatchItemResult]


class TemplateOut(BaseModel):
    name: str
    description: str
    locales: list[str]
    required_variables: list[str]
    optional_variables: list[str]
    example_context: dict[str, Any]
    #: "transactional" (never unsubscribable) or a category recipients may leave.
    category: str


class TemplateList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "default_locale": "en",
                    "templates": [
                        {
                            "name": "welcome",
                            "description": "Greets a new user after sign-up.",
                            "category": "transactional",
                            "locales": ["en", "ru"],
                            "required_variables": ["name", "login_url"],
                            "optional_variables": ["app_name"],
                            "example_context": {
                                "name": "Ada Lovelace",
                                "login_url": "https://example.com/login",
                            },
                        }
                    ],
                }
            ]
        }
    )

    default_locale: str
    templates: list[TemplateOut]


class RenderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "context": {"name": "Ада", "login_url": "https://example.com/login"},
                    "locale": "ru-RU",
                }
            ]
        },
    )

    context: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = None


class RenderedOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject": "Welcome, Ada!",
                    "html": "<html>...</html>",
                    "text": "Hello Ada, ...",
                    "locale": "en",
                }
            ]
        }
    )

    subject: str
    html: str | None
    text: str
    locale: str

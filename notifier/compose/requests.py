"""Notification requests: the wire shape (API body, ``notifier.send`` kwargs) and its validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import (
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from notifier.compose.addresses import (
    Address,
    check_custom_headers,
    check_header_value,
    parse_address,
    parse_address_list,
)
from notifier.compose.mime import AttachmentData
from notifier.compose.rendering import TemplateRenderer
from notifier.errors import InvalidNotification
from notifier.settings import Settings

__all__ = [
    "AttachmentIn",
    "Notification",
    "NotificationRequest",
    "parse_request",
    "sender_address",
    "validate_notification",
]

_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


def _as_list(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


class AttachmentIn(BaseModel):
    """An attachment as it travels in JSON: the content is base64."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = "application/octet-stream"
    content: Base64Bytes

    @field_validator("filename")
    @classmethod
    def _check_filename(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError("must not contain CR, LF or NUL")
        # Only the last path component: a client saving "../../x" or "C:\\x" as given must not
        # be steered out of its download folder.
        name = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
        if name in ("", ".", ".."):
            raise ValueError("must name a file, not a folder")
        return name

    @field_validator("content_type")
    @classmethod
    def _check_content_type(cls, value: str) -> str:
        if not _CONTENT_TYPE.match(value):
            raise ValueError("must look like 'type/subtype'")
        return value.lower()


class NotificationRequest(BaseModel):
    """One notification as publishers send it: a template and its context, or raw content."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "to": "ada@example.com",
                    "template": "welcome",
                    "context": {"name": "Ada", "login_url": "https://example.com/login"},
                    "locale": "en",
                    "metadata": {"user_id": "42"},
                }
            ]
        },
    )

    to: list[str] = Field(min_length=1, description="One address or a list of them.")
    template: str | None = Field(None, description="Template name; omit to send raw content.")
    context: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = Field(None, description="e.g. 'ru-RU'; falls back to 'ru', then default.")
    subject: str | None = Field(None, description="Overrides the template's subject.")
    text: str | None = None
    html: str | None = None
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    reply_to: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict, description="X- headers only.")
    attachments: list[AttachmentIn] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    send_at: AwareDatetime | None = Field(None, description="ISO 8601 with a timezone.")
    force: bool = Field(
        False,
        description="Send even to addresses on the suppression list (API keys with the "
        "'admin' scope only).",
    )

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return _as_list(value)

    @field_validator("locale")
    @classmethod
    def _check_locale(cls, value: str | None) -> str | None:
        if value is not None and not _LOCALE.match(value):
            raise ValueError("must be a locale tag such as 'en' or 'ru-RU'")
        return value

    @model_validator(mode="after")
    def _template_or_content(self) -> NotificationRequest:
        if self.template is not None:
            if self.text is not None or self.html is not None:
                raise ValueError("give either 'template' or raw 'text'/'html', not both")
        else:
            if not self.subject:
                raise ValueError("'subject' is required when no 'template' is given")
            if self.text is None and self.html is None:
                raise ValueError("'text' or 'html' is required when no 'template' is given")
        return self


@dataclass(frozen=True, slots=True)
class Notification:
    """A request that passed every check: parsed addresses, resolved locale, decoded attachments."""

    request: NotificationRequest
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    headers: dict[str, str]
    attachments: tuple[AttachmentData, ...]
    locale: str | None

    @property
    def template(self) -> str | None:
        return self.request.template

    @property
    def recipients(self) -> tuple[Address, ...]:
        return self.to + self.cc + self.bcc

    def is_scheduled(self, now: datetime | None = None) -> bool:
        send_at = self.request.send_at
        return send_at is not None and send_at > (now or datetime.now(UTC))


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name


#: The integers JSON encoders downstream (orjson, Celery's messages) can carry.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def check_context(context: Any, *, max_depth: int, max_bytes: int) -> None:
    """Refuse a context deeper than ``max_depth``, with an integer beyond 64 bits, or larger
    than ``max_bytes`` as JSON; InvalidNotification names the offending path."""
    pending: list[tuple[Any, str, int]] = [(context, "context", 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
            raise InvalidNotification(f"{path}: integers must fit in 64 bits", field=path)
        if isinstance(value, dict | list):
            if depth >= max_depth:
                raise InvalidNotification(
                    f"context: nested deeper than {max_depth} levels (MAX_CONTEXT_DEPTH)",
                    field="context",
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                child = f"{path}[{key}]" if isinstance(value, list) else f"{path}.{key}"
                pending.append((item, child, depth + 1))
    size = len(orjson.dumps(context))
    if size > max_bytes:
        raise InvalidNotification(
            f"context: {size} bytes as JSON; at most {max_bytes} (MAX_CONTEXT_BYTES)",
            field="context",
        )


def parse_request(data: object) -> NotificationRequest:
    """Parse a wire-shape mapping; InvalidNotification names the first bad field."""
    if isinstance(data, NotificationRequest):
        return data
    try:
        return NotificationRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _field_name(tuple(error["loc"])) or None
        message = error["msg"].removeprefix("Value error, ")
        raise InvalidNotification(f"{field}: {message}" if field else message, field=field) from exc


def _content_type_allowed(content_type: str, allowed: list[str]) -> bool:
    """``image/png`` matches ``image/png`` and ``image/*``."""
    major = content_type.partition("/")[0]
    return any(pattern in (content_type, f"{major}/*") for pattern in allowed)


def validate_notification(
    request: NotificationRequest, *, settings: Settings, renderer: TemplateRenderer
) -> Notification:
    """Every check that must pass before anything is queued.

    Raises InvalidNotification (with ``field``), TemplateNotFound or MissingVariable.
    """
    to = parse_address_list(request.to, field="to")
    cc = parse_address_list(request.cc, field="cc")
    bcc = parse_address_list(request.bcc, field="bcc")
    reply_to = parse_address_list(request.reply_to, field="reply_to")
    if not settings.smtp_utf8:
        for name, addresses in (("to", to), ("cc", cc), ("bcc", bcc), ("reply_to", reply_to)):
            for index, address in enumerate(addresses):
                if not address.addr_spec.rpartition("@")[0].isascii():
                    raise InvalidNotification(
                        f"{address.addr_spec} has a non-ASCII local part, which needs SMTPUTF8; "
                        "the relay does not offer it (SMTP_UTF8=false)",
                        field=f"{name}[{index}]",
                    )
    count = len({a.addr_spec.lower() for a in (*to, *cc, *bcc)})
    if count > settings.max_recipients:
        raise InvalidNotification(
            f"{count} recipients; at most {settings.max_recipients} are allowed per notification",
            field="to",
        )
    check_context(
        request.context,
        max_depth=settings.max_context_depth,
        max_bytes=settings.max_context_bytes,
    )
    if request.send_at is not None:
        latest = datetime.now(UTC).timestamp() + settings.record_retention_seconds
        if request.send_at.timestamp() > latest:
            raise InvalidNotification(
                f"send_at: more than RECORD_RETENTION_DAYS ({settings.record_retention_days:g}) "
                "ahead; the record would expire before it is due",
                field="send_at",
            )
    if request.subject is not None:
        check_header_value(request.subject, field="subject")
    headers = check_custom_headers(request.headers, field="headers")

    if len(request.attachments) > settings.max_attachments:
        raise InvalidNotification(
            f"{len(request.attachments)} attachments; at most {settings.max_attachments} allowed",
            field="attachments",
        )
    total = sum(len(a.content) for a in request.attachments)
    if total > settings.max_attachments_bytes:
        raise InvalidNotification(
            f"attachments total {total} bytes; at most {settings.max_attachments_bytes} allowed",
            field="attachments",
        )
    allowed = settings.attachment_content_types
    for index, attachment in enumerate(request.attachments):
        if allowed and not _content_type_allowed(attachment.content_type, allowed):
            raise InvalidNotification(
                f"content type {attachment.content_type!r} is not in ATTACHMENT_CONTENT_TYPES",
                field=f"attachments[{index}].content_type",
            )
    attachments = tuple(
        AttachmentData(filename=a.filename, content_type=a.content_type, content=a.content)
        for a in request.attachments
    )

    locale: str | None = None
    if request.template is not None:
        renderer.describe(request.template)  # TemplateNotFound for an unknown name
        locale = renderer.resolve_locale(request.template, request.locale)
        renderer.check_context(request.template, request.context)
    return Notification(
        request=request,
        to=tuple(to),
        cc=tuple(cc),
        bcc=tuple(bcc),
        reply_to=tuple(reply_to),
        headers=headers,
        attachments=attachments,
        locale=locale,
    )


def sender_address(settings: Settings) -> Address:
    """MAIL_FROM as an Address (settings already refused CR/LF and a missing address)."""
    return parse_address(settings.mail_from, field="MAIL_FROM")

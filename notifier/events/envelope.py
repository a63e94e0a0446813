"""The event envelope other services publish: a CloudEvents 1.0 subset, validated by pydantic.

Unknown attributes (CloudEvents extensions such as ``traceparent``) are accepted and dropped.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
from pydantic import AwareDatetime, ConfigDict, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from notifier.errors import InvalidEvent

__all__ = ["EventEnvelope", "parse_event"]

#: The only CloudEvents ``specversion`` this service understands.
SPEC_VERSION = "1.0"

# Messages for pydantic error types whose stock wording reads poorly in an event-rejection log.
_MESSAGES: dict[str, str] = {
    "missing": "field required",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "string_too_short": "must be a non-empty string",
    "timezone_aware": "must include a timezone offset",
}


class EventEnvelope(pydantic.BaseModel):
    """One event: ``type`` selects the routing rules, ``data`` feeds the templates.

    >>> EventEnvelope(type="user.registered", data={"email": "a@example.com"}).dedup_key is None
    True
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str
    data: dict[str, Any]
    id: str | None = pydantic.Field(default=None, min_length=1)
    source: str | None = pydantic.Field(default=None, min_length=1)
    time: AwareDatetime | None = None
    subject: str | None = pydantic.Field(default=None, min_length=1)
    specversion: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _check_type(cls, value: object) -> object:
        if not isinstance(value, str) or not value:
            raise PydanticCustomError("event_type", "must be a non-empty string")
        if any(char.isspace() for char in value):
            raise PydanticCustomError("event_type", "must not contain whitespace")
        return value

    @field_validator("specversion")
    @classmethod
    def _check_specversion(cls, value: str | None) -> str | None:
        if value is not None and value != SPEC_VERSION:
            raise PydanticCustomError(
                "specversion",
                f"must be {SPEC_VERSION!r} (got {{got}})",
                {"got": repr(value)},
            )
        return value

    @property
    def dedup_key(self) -> str | None:
        """A key identifying this event across redeliveries, or None when it has no ``id``.

        CloudEvents makes ``source`` + ``id`` unique. The source is length-prefixed so that
        ("a", "bc") and ("ab", "c") give different keys.
        """
        if self.id is None:
            return None
        source = self.source or ""
        return f"{len(source)}:{source}:{self.id}"


def parse_event(raw: object) -> EventEnvelope:
    """Validate ``raw`` (a dict, or a JSON document as str/bytes) into an :class:`EventEnvelope`.

    Raises :class:`InvalidEvent` whose ``field`` names the first offending attribute
    (dotted for nested ones) and whose message reads like ``"data: field required"``.
    """
    document: object = raw
    if isinstance(raw, str | bytes | bytearray):
        try:
            document = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise InvalidEvent(f"event is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(document).__name__}")
    try:
        return EventEnvelope.model_validate(document)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        message = _describe(error)
        raise InvalidEvent(f"{field}: {message}" if field else message, field=field) from exc


def _describe(error: ErrorDetails) -> str:
    return _MESSAGES.get(error["type"], error["msg"])

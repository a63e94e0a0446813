"""Unit tests for the event envelope: validation, the field named on errors, dedup keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from notifier.errors import InvalidEvent
from notifier.events import EventEnvelope, parse_event


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "user.registered", "data": {"email": "ann@example.com"}}
    event.update(overrides)
    return event


def test_minimal_event_is_accepted() -> None:
    event = parse_event(_event())
    assert event.type == "user.registered"
    assert event.data == {"email": "ann@example.com"}
    assert (event.id, event.source, event.time, event.subject, event.specversion) == (None,) * 5


def test_all_attributes_from_json_text_and_bytes() -> None:
    raw = json.dumps(
        _event(
            id="42",
            source="/accounts",
            time="2024-05-01T12:00:00Z",
            subject="user/7",
            specversion="1.0",
        )
    )
    for document in (raw, raw.encode()):
        event = parse_event(document)
        assert event.id == "42"
        assert event.source == "/accounts"
        assert event.time == datetime(2024, 5, 1, 12, tzinfo=UTC)
        assert event.subject == "user/7"
        assert event.specversion == "1.0"


def test_extension_attributes_are_ignored() -> None:
    event = parse_event(_event(traceparent="00-abc", partitionkey="p1"))
    assert "traceparent" not in event.model_dump()


def test_envelope_is_frozen() -> None:
    event = parse_event(_event())
    with pytest.raises(pydantic.ValidationError):
        event.type = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"type": None}, "type", "type: must be a non-empty string"),
        ({"type": ""}, "type", "type: must be a non-empty string"),
        ({"type": 7}, "type", "type: must be a non-empty string"),
        ({"type": "user registered"}, "type", "type: must not contain whitespace"),
        ({"data": None}, "data", "data: must be a JSON object"),
        ({"data": ["a"]}, "data", "data: must be a JSON object"),
        ({"id": ""}, "id", "id: must be a non-empty string"),
        ({"id": 42}, "id", "id: must be a string"),
        ({"source": ""}, "source", "source: must be a non-empty string"),
        ({"subject": ""}, "subject", "subject: must be a non-empty string"),
        ({"time": "2024-05-01T12:00:00"}, "time", "time: must include a timezone offset"),
        ({"time": "yesterday"}, "time", "time: "),
        ({"specversion": "0.3"}, "specversion", "specversion: must be '1.0' (got '0.3')"),
    ],
)
def test_invalid_attribute_is_named(overrides: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(_event(**overrides))
    assert caught.value.field == field
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("missing", ["type", "data"])
def test_missing_required_attribute(missing: str) -> None:
    event = _event()
    del event[missing]
    with pytest.raises(InvalidEvent, match=f"^{missing}: field required$") as caught:
        parse_event(event)
    assert caught.value.field == missing


def test_nested_field_is_dotted() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(_event(data={1: "not a string key"}))
    assert caught.value.field is not None
    assert caught.value.field.startswith("data.1")


def test_first_bad_field_is_reported() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event({"type": "", "data": None, "id": ""})
    assert caught.value.field == "type"


@pytest.mark.parametrize("raw", ["{not json", b"\xff\xfe\x00", "", b""])
def test_malformed_json_is_rejected(raw: str | bytes) -> None:
    with pytest.raises(InvalidEvent, match="not valid JSON") as caught:
        parse_event(raw)
    assert caught.value.field is None


@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "null", 5, ["type"], None])
def test_non_object_is_rejected(raw: object) -> None:
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        parse_event(raw)


def test_invalid_event_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="data: field required"):
        parse_event({"type": "x"})


def test_dedup_key_absent_without_id() -> None:
    assert parse_event(_event(source="/accounts")).dedup_key is None


def test_dedup_key_stable_and_source_scoped() -> None:
    first = parse_event(_event(id="1", source="/a"))
    again = parse_event(_event(id="1", source="/a", data={"other": True}))
    other_source = parse_event(_event(id="1", source="/b"))
    assert first.dedup_key == again.dedup_key
    assert first.dedup_key != other_source.dedup_key


def test_dedup_key_concatenation_cannot_collide() -> None:
    one = EventEnvelope(type="t", data={}, source="a", id="bc")
    two = EventEnvelope(type="t", data={}, source="ab", id="c")
    assert one.dedup_key != two.dedup_key


def test_dedup_key_missing_source_counts_as_empty() -> None:
    no_source = EventEnvelope(type="t", data={}, id="x")
    assert no_source.dedup_key is not None
    assert no_source.dedup_key == EventEnvelope(type="u", data={"a": 1}, id="x").dedup_key
    assert no_source.dedup_key != EventEnvelope(type="t", data={}, source="s", id="x").dedup_key

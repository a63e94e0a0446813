"""Built task messages have the shape of Celery's own ``send_task`` publish and decode like it."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from celery import Celery
from celery.worker.request import Request
from kombu.transport.virtual import Message as VirtualMessage

from notifier.messages import DEFAULT_QUEUE, DELIVER_TASK, build_task_message

# Where our message and a ``send_task`` publish legitimately differ: ``send_task`` asks for
# results on its own reply queue and leaves ignore_result unset; every message gets a fresh tag.
PROPERTIES_THAT_DIFFER = {"reply_to", "delivery_tag"}
HEADERS_THAT_DIFFER = {"ignore_result"}


@pytest.fixture
def publisher() -> Iterator[Celery]:
    """A Celery app publishing to kombu's in-memory transport, which keeps the raw envelope."""
    app = Celery("publisher", broker="memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    yield app
    app.close()


def published_by_celery(app: Celery, **options: Any) -> dict[str, Any]:
    """What ``send_task`` puts on the default queue: the envelope kombu's transports store."""
    app.send_task(DELIVER_TASK, **options)
    with app.connection_for_write() as connection:
        envelope: dict[str, Any] = connection.default_channel._get(DEFAULT_QUEUE)
    return envelope


def test_envelope_headers_and_properties_match_send_task(publisher: Celery) -> None:
    options: dict[str, Any] = {"args": ["abc-123"], "kwargs": {"x": 1}, "task_id": "abc-123"}
    theirs = published_by_celery(publisher, **options)
    ours = orjson.loads(
        build_task_message(task=DELIVER_TASK, task_id="abc-123", args=["abc-123"], kwargs={"x": 1})
    )

    assert ours.keys() == theirs.keys()
    assert ours["headers"].keys() == theirs["headers"].keys()
    assert ours["properties"].keys() == theirs["properties"].keys()
    assert ours["properties"]["delivery_info"] == theirs["properties"]["delivery_info"]
    for name in theirs["headers"].keys() - HEADERS_THAT_DIFFER:
        assert ours["headers"][name] == theirs["headers"][name], name
    for name in theirs["properties"].keys() - PROPERTIES_THAT_DIFFER:
        assert ours["properties"][name] == theirs["properties"][name], name
    assert ours["headers"]["ignore_result"] is False
    assert ours["properties"]["reply_to"] == ""
    for name in ("body", "content-type", "content-encoding"):
        assert ours[name] == theirs[name], name


def test_message_decodes_like_a_send_task_message() -> None:
    raw = build_task_message(
        task="notifier.deliver", task_id="abc-123", args=["abc-123"], kwargs={"x": 1}
    )
    envelope = orjson.loads(raw)
    assert envelope["headers"]["task"] == "notifier.deliver"
    assert envelope["headers"]["id"] == envelope["properties"]["correlation_id"] == "abc-123"
    assert envelope["properties"]["delivery_info"]["routing_key"] == "celery"
    body = orjson.loads(base64.b64decode(envelope["body"]))
    assert body[0] == ["abc-123"] and body[1] == {"x": 1}

    # Decode through kombu and Celery's own protocol-2 reader.
    app = Celery("decode-check", set_as_current=False)
    channel = app.connection_for_write("memory://").default_channel
    message = VirtualMessage(payload=envelope, channel=channel)
    assert message.decode()[1] == {"x": 1}

    request = Request(message, app=app, task=app.tasks["celery.backend_cleanup"])
    assert request.id == "abc-123"
    assert request.task_name == "notifier.deliver"


def test_redacted_reprs_replace_the_arguments_in_the_headers() -> None:
    envelope = orjson.loads(
        build_task_message(
            task=DELIVER_TASK,
            task_id="n-1",
            args=["n-1"],
            kwargs={"to": "ann@example.com"},
            argsrepr="('n-1',)",
            kwargsrepr="{'to': 'a***@example.com'}",
            retries=3,
            queue="other",
        )
    )
    assert envelope["headers"]["argsrepr"] == "('n-1',)"
    assert envelope["headers"]["kwargsrepr"] == "{'to': 'a***@example.com'}"
    assert envelope["headers"]["retries"] == 3
    assert envelope["properties"]["delivery_info"]["routing_key"] == "other"


def test_origin_names_the_process_building_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    # Read at call time, not at import: a forked worker's messages carry its own pid.
    before = orjson.loads(build_task_message(task="t", task_id="1"))["headers"]["origin"]
    assert before.startswith(f"gen{os.getpid()}@")
    monkeypatch.setattr(os, "getpid", lambda: 424242)
    after = orjson.loads(build_task_message(task="t", task_id="1"))["headers"]["origin"]
    assert after.startswith("gen424242@")


def test_every_message_gets_its_own_delivery_tag() -> None:
    first = orjson.loads(build_task_message(task="t", task_id="1"))
    second = orjson.loads(build_task_message(task="t", task_id="1"))
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]

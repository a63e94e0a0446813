"""Hand-built task messages decode exactly as Celery decodes what kombu's Redis transport stores."""

from __future__ import annotations

import base64

import orjson
from celery import Celery
from kombu.transport.virtual import Message as VirtualMessage

from notifier.messages import build_task_message


def test_message_decodes_like_a_send_task_message():
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
    app = Celery("decode-check")
    channel = app.connection_for_write("memory://").default_channel
    message = VirtualMessage(payload=envelope, channel=channel)
    assert message.decode()[1] == {"x": 1}
    from celery.worker.request import Request

    request = Request(message, app=app, task=app.tasks["celery.backend_cleanup"])
    assert request.id == "abc-123"
    assert request.task_name == "notifier.deliver"


def test_every_message_gets_its_own_delivery_tag():
    first = orjson.loads(build_task_message(task="t", task_id="1"))
    second = orjson.loads(build_task_message(task="t", task_id="1"))
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]

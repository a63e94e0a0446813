"""Built task messages against a real redis-server: the same shape ``send_task`` stores there,
and kombu's Redis transport reads ours back as it reads its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from celery import Celery
from kombu import Queue

from notifier.messages import DELIVER_TASK, build_task_message
from tests.support.redis_server import RedisServer


@pytest.fixture
def publisher(redis_server: RedisServer) -> Iterator[Celery]:
    app = Celery("publisher", broker=redis_server.url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    yield app
    app.close()


@pytest.fixture
def queue_name(redis_server: RedisServer) -> Iterator[str]:
    """A queue of this test's own, so the session worker (if any) does not consume it."""
    name = f"messages-{uuid.uuid4().hex[:8]}"
    yield name
    redis_server.client().delete(name)


def test_raw_envelope_has_the_keys_send_task_stores(
    publisher: Celery, redis_server: RedisServer, queue_name: str
) -> None:
    task_id = str(uuid.uuid4())
    publisher.send_task(DELIVER_TASK, args=[task_id], task_id=task_id, queue=queue_name)
    redis = redis_server.client()
    raw = redis.rpop(queue_name)
    assert isinstance(raw, str)
    theirs: dict[str, Any] = orjson.loads(raw)
    ours = orjson.loads(
        build_task_message(task=DELIVER_TASK, task_id=task_id, args=[task_id], queue=queue_name)
    )
    assert ours.keys() == theirs.keys()
    assert ours["headers"].keys() == theirs["headers"].keys()
    assert ours["properties"].keys() == theirs["properties"].keys()
    assert ours["properties"]["delivery_info"] == theirs["properties"]["delivery_info"]
    assert ours["body"] == theirs["body"]
    for name in ("task", "id", "root_id", "argsrepr", "kwargsrepr", "origin", "retries"):
        assert ours["headers"][name] == theirs["headers"][name], name


def test_kombu_consumes_a_built_message_from_redis(
    publisher: Celery, redis_server: RedisServer, queue_name: str
) -> None:
    task_id = str(uuid.uuid4())
    raw = build_task_message(
        task=DELIVER_TASK, task_id=task_id, args=[task_id], kwargs={"x": 1}, queue=queue_name
    )
    redis_server.client().lpush(queue_name, raw)

    with publisher.connection_for_read() as connection:
        simple = connection.SimpleQueue(Queue(queue_name, routing_key=queue_name))
        try:
            message = simple.get(timeout=5)
            assert message.headers["task"] == DELIVER_TASK
            assert message.headers["id"] == task_id
            assert message.properties["correlation_id"] == task_id
            assert message.decode()[:2] == [[task_id], {"x": 1}]
            message.ack()
        finally:
            simple.close()
    assert redis_server.client().llen(queue_name) == 0

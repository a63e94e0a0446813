"""AmqpSink against a real RabbitMQ: confirmed publishes land in the quorum queue as Celery's
messages, and a connection the broker closed is replaced on the next publish."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from kombu import Connection

from notifier.messages import DELIVER_TASK, build_task_message
from notifier.storage.sink import AmqpSink
from tests.support.rabbitmq import close_connections, private_vhost


@pytest.fixture
def amqp_url() -> Iterator[str]:
    with private_vhost() as url:
        yield url


def _drain(url: str) -> list[tuple[str, list[str]]]:
    """(task id, args) of every message waiting in ``celery``, acknowledged."""
    taken = []
    with Connection(url) as connection:
        channel = connection.default_channel
        while (message := channel.basic_get("celery")) is not None:
            taken.append((message.headers["id"], json.loads(message.body)[0]))
            channel.basic_ack(message.delivery_tag)
    return taken


def test_publishes_survive_a_closed_connection(amqp_url: str) -> None:
    sink = AmqpSink(amqp_url)
    try:
        first = build_task_message(task=DELIVER_TASK, task_id="n-1", args=["n-1"])
        asyncio.run(sink.publish([first]))
        close_connections(amqp_url)
        second = build_task_message(task=DELIVER_TASK, task_id="n-2", args=["n-2"])
        asyncio.run(sink.publish([second.decode()]))
    finally:
        sink.close()
    assert _drain(amqp_url) == [("n-1", ["n-1"]), ("n-2", ["n-2"])]

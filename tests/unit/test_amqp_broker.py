"""RabbitMQ as the broker (BROKER_URL): the setting, the worker's Celery config, and the
publish arguments the sink makes from a built task message."""

from __future__ import annotations

import base64

import orjson
import pytest

from notifier.errors import ConfigurationError
from notifier.messages import DELIVER_TASK, WEBHOOK_DELIVER_TASK, WEBHOOKS_QUEUE, build_task_message
from notifier.settings import load_settings
from notifier.storage.sink import AmqpSink, message_sink, publish_arguments
from notifier.worker.app import celery_config

AMQP = "amqp://guest:guest@127.0.0.1:5672/notifier"


def test_broker_url_must_name_rabbitmq() -> None:
    with pytest.raises(ConfigurationError, match="BROKER_URL"):
        load_settings(broker_url="redis://localhost:6379/1")


def test_without_broker_url_the_broker_is_redis_as_before() -> None:
    settings = load_settings()
    config = celery_config(settings)
    assert not settings.uses_amqp and message_sink(settings) is None
    assert config["broker_url"].startswith("redis://")
    assert config["broker_transport"].startswith("notifier.worker.broker_transport:")


def test_amqp_broker_declares_quorum_queues_and_keeps_results_in_redis() -> None:
    settings = load_settings(broker_url=AMQP)
    config = celery_config(settings)
    sink = message_sink(settings)
    assert settings.uses_amqp and isinstance(sink, AmqpSink)
    sink.close()
    assert config["broker_url"] == AMQP and config["broker_transport"] is None
    assert "redis://localhost:6379/0" in config["result_backend"]
    assert config["broker_transport_options"] == {"confirm_publish": True}
    assert config["task_default_queue_type"] == "quorum"
    assert {q.name: q.queue_arguments for q in config["task_queues"]} == {
        "celery": {"x-queue-type": "quorum"},
        "webhooks": {"x-queue-type": "quorum"},
    }


def test_publish_arguments_carry_the_celery_message_unchanged() -> None:
    message = build_task_message(task=DELIVER_TASK, task_id="n-1", args=["n-1"])
    envelope = orjson.loads(message)
    arguments = publish_arguments(message)
    assert arguments["body"] == base64.b64decode(envelope["body"])
    assert orjson.loads(arguments["body"])[0] == ["n-1"]
    assert arguments["headers"]["id"] == "n-1" and arguments["headers"]["task"] == DELIVER_TASK
    assert arguments["content_type"] == "application/json"
    assert (arguments["exchange"], arguments["routing_key"]) == ("celery", "celery")
    assert arguments["delivery_mode"] == 2


def test_publish_arguments_route_webhook_messages_to_their_queue() -> None:
    message = build_task_message(
        task=WEBHOOK_DELIVER_TASK, task_id="w-1", args=["e", "m"], queue=WEBHOOKS_QUEUE
    )
    arguments = publish_arguments(message.decode())
    assert (arguments["exchange"], arguments["routing_key"]) == (WEBHOOKS_QUEUE, WEBHOOKS_QUEUE)

"""RabbitMQ as the broker (BROKER_URL): the API, bare Celery publishers, scheduled sends,
retries, batches and webhook deliveries are served over it, and a publish that fails after the
record was written is delivered by the recovery sweep."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery

from notifier.messages import DEFAULT_QUEUE, SEND_TASK
from tests.reliability.faults import plain_request
from tests.support.api_server import ApiServer, api_settings
from tests.support.cli import run_cli
from tests.support.ports import free_port
from tests.support.rabbitmq import private_vhost
from tests.support.records import read_record, wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.worker import WorkerProcess, service_env

pytestmark = pytest.mark.slow


@pytest.fixture
def amqp_url() -> Iterator[str]:
    with private_vhost() as url:
        yield url


@pytest.fixture
def api_factory() -> Iterator[Callable[..., ApiServer]]:
    started: list[ApiServer] = []

    def factory(redis_url: str, broker_url: str, **overrides: Any) -> ApiServer:
        server = ApiServer(api_settings(redis_url, broker_url=broker_url, **overrides)).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def test_api_and_bare_celery_sends_are_delivered_over_rabbitmq(
    amqp_url: str,
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
    api_factory: Callable[..., ApiServer],
) -> None:
    make_worker(
        service_env(redis_url=own_redis.url, smtp_port=smtp.port, extra={"BROKER_URL": amqp_url})
    )
    api = api_factory(own_redis.url, amqp_url)
    to_api, to_celery = (f"{kind}-{uuid.uuid4().hex[:8]}@example.com" for kind in ("api", "celery"))
    with api.client() as http:
        response = http.post("/api/v1/notifications", json=plain_request(to_api))
    assert response.status_code == 202, response.text
    api_id = response.json()["id"]

    client = Celery("amqp_publisher", broker=amqp_url)
    # The one setting a publisher adds for RabbitMQ: it declares the queue as the worker does.
    client.conf.update(
        task_serializer="json", accept_content=["json"], task_default_queue_type="quorum"
    )
    try:
        celery_id = str(client.send_task(SEND_TASK, kwargs=plain_request(to_celery)).id)
    finally:
        client.close()

    smtp.wait_for(1, to=to_api)
    smtp.wait_for(1, to=to_celery)
    assert wait_for_status(own_redis.url, api_id, {"sent"}).status == "sent"
    assert wait_for_status(own_redis.url, celery_id, {"sent"}).status == "sent"
    # Nothing went through Redis's queue list: the messages travelled over RabbitMQ.
    probe = own_redis.client()
    try:
        assert probe.llen(DEFAULT_QUEUE) == 0
    finally:
        probe.close()

    # `notifier health` probes the worker over RabbitMQ too (its queue, not Redis's list).
    env = service_env(redis_url=own_redis.url, smtp_port=smtp.port, extra={"BROKER_URL": amqp_url})
    health = run_cli(env, "health", "--timeout", "20")
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.startswith("ok: add_numbers(2, 3) = 5")


def test_failed_publish_leaves_the_record_queued_and_recovery_delivers_it(
    amqp_url: str,
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
    api_factory: Callable[..., ApiServer],
) -> None:
    # An API whose broker cannot be reached (nothing listens on that port): the record is
    # written, the publish fails, the request is still accepted.
    unreachable = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    api = api_factory(own_redis.url, unreachable)
    to = f"recover-{uuid.uuid4().hex[:8]}@example.com"
    with api.client() as http:
        response = http.post("/api/v1/notifications", json=plain_request(to))
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]
    record = read_record(own_redis.url, notification_id)
    assert record is not None and record.status == "queued"

    # A worker on the real broker: its recovery sweep publishes the lost message.
    env = service_env(
        redis_url=own_redis.url,
        smtp_port=smtp.port,
        extra={"BROKER_URL": amqp_url, "RECOVERY_AFTER": "1"},
    )
    make_worker(env)
    smtp.wait_for(1, to=to, timeout=60)
    assert wait_for_status(own_redis.url, notification_id, {"sent"}).status == "sent"
    assert len([m for m in smtp.messages if to in m.rcpt_tos]) == 1


def test_scheduled_send_retry_and_batch_go_through_rabbitmq(
    amqp_url: str,
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
    api_factory: Callable[..., ApiServer],
) -> None:
    make_worker(
        service_env(redis_url=own_redis.url, smtp_port=smtp.port, extra={"BROKER_URL": amqp_url})
    )
    api = api_factory(own_redis.url, amqp_url)
    tag = uuid.uuid4().hex[:8]
    later, retried = f"later-{tag}@example.com", f"retried-{tag}@example.com"
    batch = [f"batch{i}-{tag}@example.com" for i in range(3)]
    # The first attempt gets a 451: its retry is scheduled, and the dispatcher publishes it.
    smtp.fail(451, recipients=[retried], times=1)
    send_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    with api.client() as http:
        scheduled = http.post(
            "/api/v1/notifications", json={**plain_request(later), "send_at": send_at}
        )
        failing = http.post("/api/v1/notifications", json=plain_request(retried))
        batched = http.post(
            "/api/v1/notifications/batch",
            json={"notifications": [plain_request(to) for to in batch]},
        )
    assert scheduled.status_code == failing.status_code == batched.status_code == 202
    assert scheduled.json()["status"] == "scheduled"

    for to in (later, retried, *batch):
        smtp.wait_for(1, to=to, timeout=30)
    for response in (scheduled, failing):
        assert wait_for_status(own_redis.url, response.json()["id"], {"sent"}).status == "sent"
    record = read_record(own_redis.url, failing.json()["id"])
    assert record is not None and record.attempt_count == 2
    probe = own_redis.client()
    try:
        assert probe.llen(DEFAULT_QUEUE) == 0
    finally:
        probe.close()


def test_webhook_deliveries_go_through_rabbitmq(
    amqp_url: str,
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
    api_factory: Callable[..., ApiServer],
) -> None:
    make_worker(
        service_env(redis_url=own_redis.url, smtp_port=smtp.port, extra={"BROKER_URL": amqp_url})
    )
    secret = "hooks-secret-0001"
    api = api_factory(own_redis.url, amqp_url, api_keys=[f"hooks:{secret}:send+read+manage"])
    receiver = WebhookReceiver().start()
    try:
        with api.client(key=secret) as http:
            created = http.post("/api/v1/webhooks/endpoints", json={"url": receiver.url("hook")})
            assert created.status_code == 201, created.text
            receiver.secrets.append(created.json()["secret"])
            response = http.post(
                "/api/v1/notifications",
                json=plain_request(f"hook-{uuid.uuid4().hex[:8]}@example.com"),
            )
            assert response.status_code == 202, response.text
        notification_id = response.json()["id"]
        receiver.wait_for(
            lambda d: (
                d.type == "notification.sent" and d.data.get("notification_id") == notification_id
            )
        )
    finally:
        receiver.stop()
    probe = own_redis.client()
    try:
        assert probe.llen("webhooks") == 0
    finally:
        probe.close()

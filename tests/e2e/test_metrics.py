"""Metrics end to end: a real worker serving multiprocess metrics, real Redis, real SMTP."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Callable

import httpx
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from notifier.observability.metrics import read_queue_snapshot, render_metrics
from notifier.storage.store import NotificationStore, connect_redis
from tests.support.api_server import API_KEY, ApiServer, api_settings
from tests.support.ports import free_port, wait_for_port
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

WELCOME = {"template": "welcome", "context": {"name": "Anna", "login_url": "https://x.test/in"}}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return parse(response.read().decode())


def test_worker_metrics_count_sent_failed_retried_and_observe_latency(
    worker_env: dict[str, str],
    make_worker: Callable[..., WorkerProcess],
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
) -> None:
    redis_url = redis_server.private_db(7)
    port = free_port()
    env = {**worker_env, "REDIS_URL": redis_url, "WORKER_METRICS_PORT": str(port)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    make_worker(env, concurrency=2)
    wait_for_port(port)

    client = Celery("metrics_client", broker=redis_url, backend=redis_url)
    client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    try:
        good = [f"ok-{uuid.uuid4().hex[:8]}@example.com" for _ in range(3)]
        bad = f"bad-{uuid.uuid4().hex[:8]}@example.com"
        flaky = f"flaky-{uuid.uuid4().hex[:8]}@example.com"
        smtp.fail(550, recipients=[bad])
        smtp.fail(451, recipients=[flaky], times=1)
        ids = [
            str(client.send_task("notifier.send", kwargs={"to": to, **WELCOME}).id)
            for to in [*good, bad, flaky]
        ]
        statuses = [wait_for_status(redis_url, nid, {"sent", "failed"}).status for nid in ids]
        assert statuses == ["sent", "sent", "sent", "failed", "sent"]
        event = {"type": "nobody.listens", "source": "tests", "id": uuid.uuid4().hex, "data": {}}
        outcome = client.send_task("notifier.event", args=[event]).get(timeout=20)
        assert outcome["ignored"] is True
    finally:
        client.close()

    samples = scrape(port)
    assert (
        value(samples, "notifier_notifications_accepted_total", template="welcome", source="celery")
        == 5
    )
    assert value(samples, "notifier_notifications_sent_total", template="welcome") == 4
    assert (
        value(
            samples, "notifier_notifications_failed_total", template="welcome", reason="permanent"
        )
        == 1
    )
    assert (
        value(
            samples, "notifier_notifications_retried_total", template="welcome", reason="transient"
        )
        == 1
    )
    assert value(samples, "notifier_events_ignored_total", via="celery") == 1
    assert value(samples, "notifier_smtp_replies_total", code="250") == 4
    assert value(samples, "notifier_smtp_replies_total", code="550") == 1
    assert value(samples, "notifier_smtp_replies_total", code="451") == 1
    # Both worker processes' values are summed by the main process.
    assert value(samples, "notifier_delivery_latency_seconds_count", template="welcome") == 4
    assert value(samples, "notifier_delivery_latency_seconds_sum", template="welcome") > 0
    assert value(samples, "notifier_smtp_send_seconds_count", outcome="sent") == 4
    assert value(samples, "notifier_smtp_send_seconds_count", outcome="permanent") == 1
    assert value(samples, "notifier_smtp_send_seconds_count", outcome="transient") == 1

    # The API's /metrics (open: no key) adds the queue gauges read from Redis at scrape time.
    api = ApiServer(api_settings(redis_url)).start()
    try:
        with httpx.Client(base_url=api.url, timeout=10) as http:
            before = parse(http.get("/metrics").text)
            accepted = http.post(
                "/api/v1/notifications",
                json={"to": f"api-{uuid.uuid4().hex[:8]}@example.com", **WELCOME},
                headers={"X-API-Key": API_KEY},
            )
            assert accepted.status_code == 202, accepted.text
            wait_for_status(redis_url, accepted.json()["id"], {"sent"})
            response = http.get("/metrics")
    finally:
        api.stop()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    api_samples = parse(response.text)
    labels = {"template": "welcome", "source": "api"}
    assert value(api_samples, "notifier_notifications_accepted_total", **labels) == (
        value(before, "notifier_notifications_accepted_total", **labels) + 1
    )
    assert value(api_samples, "notifier_redis_up") == 1
    assert value(api_samples, "notifier_dead_letters") == 1
    assert value(api_samples, "notifier_notifications", status="sent") == 5
    assert value(api_samples, "notifier_notifications", status="failed") == 1
    assert value(api_samples, "notifier_queue_depth") == 0
    assert value(api_samples, "notifier_scheduled_notifications") == 0


def test_queue_gauges_report_redis_down_instead_of_failing() -> None:
    async def gauges() -> Samples:
        redis = connect_redis(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
        try:
            snapshot = await read_queue_snapshot(NotificationStore(redis))
        finally:
            await redis.aclose()
        return parse(render_metrics(snapshot).decode())

    samples = asyncio.run(gauges())
    assert value(samples, "notifier_redis_up") == 0
    assert ("notifier_dead_letters", frozenset()) not in samples

"""Redis goes down while the API takes requests: 503s, never a 500, nothing half-written; on the
Redis broker and on RabbitMQ (Redis then holds the records only)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from notifier.storage.keys import Keys
from tests.reliability.faults import deliveries, plain_request, wait_terminal
from tests.support.api_server import ApiServer, api_settings
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


def test_api_answers_503_while_redis_is_down_and_recovers(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis(appendonly=True)
    make_worker(private_env(redis, broker_url), concurrency=2)
    amqp = {"broker_url": broker_url} if broker_url else {}
    api = ApiServer(api_settings(redis.url, **amqp)).start()
    accepted: list[str] = []
    answers: list[int] = []
    tag = uuid.uuid4().hex[:8]

    def post(http: httpx.Client, index: int) -> int:
        response = http.post(
            "/api/v1/notifications", json=plain_request(f"api-{tag}-{index}@example.com")
        )
        answers.append(response.status_code)
        if response.status_code == 202:
            accepted.append(response.json()["id"])
        elif response.status_code == 503:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers.get("Retry-After")
        return int(response.status_code)

    try:
        with api.client() as http:
            for index in range(5):
                assert post(http, index) == 202
            redis.stop()
            for index in range(5, 15):
                assert post(http, index) == 503
            redis.start()
            deadline = time.monotonic() + 30
            index = 15
            while post(http, index) != 202:  # the API reconnects by itself
                assert time.monotonic() < deadline, "the API did not recover"
                time.sleep(0.2)
                index += 1
            for later in range(index + 1, index + 5):
                assert post(http, later) == 202
    finally:
        api.stop()

    assert 500 not in answers and set(answers) <= {202, 503}
    records = wait_terminal(redis.url, accepted, timeout=60)
    assert {r.status for r in records.values()} == {"sent"}
    counts = deliveries(smtp, accepted)
    assert all(counts[i] == 1 for i in accepted)
    # Nothing half-written: the only records are those of 202 answers (and on RabbitMQ nothing
    # went through Redis's queue list).
    client = redis.client()
    try:
        assert client.zcard(Keys().all) == len(accepted)
        assert client.llen(Keys().queue) == 0
    finally:
        client.close()
    refused = answers.count(503)
    print(f"\napi with redis down: {len(accepted)} accepted and sent once, {refused} answered 503")

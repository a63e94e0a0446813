"""A worker killed with webhooks in flight, scheduled and not yet fanned out: nothing is lost, on
the Redis broker and on RabbitMQ (where the pump publishes deliveries through the sink)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.api_server import ApiServer, api_settings
from tests.support.redis_server import RedisServer
from tests.support.webhook_receiver import Delivery, WebhookReceiver
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow

KEY = "alice:alice-secret-0001:send+read+manage"
HOOKS = {"WEBHOOK_TIMEOUT": "3", "WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,1,1,2,2,4"}


def about(notification_id: str) -> Callable[[Delivery], bool]:
    return lambda d: d.data.get("notification_id") == notification_id


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_killed_worker_loses_no_webhook(
    make_redis: Callable[..., RedisServer],
    private_env: Callable[..., dict[str, str]],
    make_worker: Callable[..., WorkerProcess],
    receiver: WebhookReceiver,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    env = private_env(redis, broker_url, **HOOKS)
    amqp = {"broker_url": broker_url} if broker_url else {}
    api = ApiServer(api_settings(redis.url, api_keys=[KEY], **amqp)).start()
    try:
        client = api.client(key=KEY.split(":")[1])
        created = client.post(
            "/api/v1/webhooks/endpoints",
            json={"url": receiver.url("hook"), "event_types": ["notification.sent"]},
        ).json()
        receiver.secrets.append(created["secret"])
        receiver.sleep = 60.0  # the first request hangs: it is in flight when the worker dies

        first = make_worker(env)
        body = {
            "to": ["ada@example.com"],
            "template": "welcome",
            "context": {"name": "Ada", "login_url": "https://example.com/login"},
        }
        in_flight = client.post("/api/v1/notifications", json=body).json()["id"]
        deadline = time.monotonic() + 30
        while receiver.requests_started < 1:
            assert time.monotonic() < deadline, first.log_text()[-2000:]
            time.sleep(0.05)
        first.kill()  # SIGKILL, its pool too: the delivery task was never acknowledged

        # Events while no worker runs wait in Redis to be fanned out.
        later = [client.post("/api/v1/notifications", json=body).json()["id"] for _ in range(3)]
        receiver.sleep = 0.0
        make_worker(env)

        for notification_id in [in_flight, *later]:
            receiver.wait_for(about(notification_id), timeout=60)
        answered = receiver.accepted()
        assert len({d.id for d in answered}) == 4
        log = client.get(f"/api/v1/webhooks/endpoints/{created['id']}/attempts").json()["items"]
        assert sorted(a["status"] for a in log) == ["succeeded"] * 4
        client.close()
    finally:
        api.stop()

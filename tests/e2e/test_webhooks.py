"""Signed webhooks end to end: a real API, worker, Redis, SMTP server and webhook receiver.

Every request the receiver gets is verified with standardwebhooks' ``Webhook.verify``. The
module runs its own redis-server and worker, with a short retry schedule, so no other worker
consumes its ``webhooks`` queue with the default (hours-long) schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.storage.keys import Keys
from tests.support.api_server import ApiServer, api_settings
from tests.support.ports import free_port
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.webhook_receiver import Delivery, WebhookReceiver
from tests.support.worker import WorkerProcess, service_env

ALICE = "alice:alice-secret-0001:send+read+manage"
BOB = "bob:bob-secret-0002:send+read+manage"
ROOT = "root:root-secret-0003:send+read+manage+admin"
READER = "reader:reader-secret-0004:read"
#: Retry delays after the first, immediate try: 8 attempts in about 16 s.
SCHEDULE = "0.2,0.3,0.5,1,2,4,8"
WEBHOOK_TIMEOUT = 5.0
KEYS = Keys("notifier")
METRICS_PORT = free_port()
POSTMARK_AUTH = ("postmark", "postmark-webhook-password")


@pytest.fixture(scope="module")
def hooks_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("hooks-redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def hooks_worker(
    hooks_redis: RedisServer,
    smtp_server: RecordingSMTPServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    env = service_env(
        redis_url=hooks_redis.url,
        smtp_port=smtp_server.port,
        extra={
            "WEBHOOK_RETRY_SCHEDULE": SCHEDULE,
            "WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT),
            "WEBHOOK_CONCURRENCY_PER_PROCESS": "4",
            "RETRY_MAX_ATTEMPTS": "3",
            "WORKER_METRICS_PORT": str(METRICS_PORT),
            "WORKER_METRICS_HOST": "127.0.0.1",
        },
    )
    log_path: Path = tmp_path_factory.mktemp("hooks-worker") / "worker.log"
    process = WorkerProcess(env=env, log_path=log_path, concurrency=1)
    process.start()
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def hooks_api(hooks_redis: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(
        api_settings(
            hooks_redis.url,
            api_keys=[ALICE, BOB, ROOT, READER],
            webhook_secret_grace=3600,
            postmark_webhook_username=POSTMARK_AUTH[0],
            postmark_webhook_password=POSTMARK_AUTH[1],
        )
    ).start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def key(spec: str) -> str:
    return spec.split(":")[1]


@pytest.fixture
def as_user(
    hooks_api: ApiServer, hooks_worker: WorkerProcess, smtp: RecordingSMTPServer
) -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def factory(spec: str) -> httpx.Client:
        client = hooks_api.client(key=key(spec))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
    # Endpoints of this test would keep getting later tests' events, toward a stopped receiver.
    with hooks_api.client(key=key(ROOT)) as root:
        for endpoint in root.get("/api/v1/webhooks/endpoints").json():
            root.delete(f"/api/v1/webhooks/endpoints/{endpoint['id']}")


def add_endpoint(client: httpx.Client, receiver: WebhookReceiver, path: str, **body: Any) -> str:
    response = client.post("/api/v1/webhooks/endpoints", json={"url": receiver.url(path), **body})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_")
    receiver.secrets.append(created["secret"])
    return str(created["id"])


def send(client: httpx.Client, to: str) -> str:
    body = {
        "to": [to],
        "template": "welcome",
        "context": {"name": "Ada", "login_url": "https://example.com/login"},
    }
    response = client.post("/api/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def about(notification_id: str, event_type: str | None = None) -> Callable[[Delivery], bool]:
    return lambda d: (
        d.data.get("notification_id") == notification_id
        and (event_type is None or d.type == event_type)
    )


def at(path: str, predicate: Callable[[Delivery], bool]) -> Callable[[Delivery], bool]:
    return lambda d: d.path == path and predicate(d)


def attempts(client: httpx.Client, endpoint_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/webhooks/endpoints/{endpoint_id}/attempts?limit=1000")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_ordinary_send_gives_signed_accepted_and_sent(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver, hooks_redis: RedisServer
) -> None:
    alice, bob, root = as_user(ALICE), as_user(BOB), as_user(ROOT)
    alice_ep = add_endpoint(alice, receiver, "alice")
    bob_ep = add_endpoint(bob, receiver, "bob")
    add_endpoint(root, receiver, "root")

    notification_id = send(alice, "ada@example.com")

    for event_type in ("notification.accepted", "notification.sent"):
        for path in ("/alice", "/root"):
            receiver.wait_for(at(path, about(notification_id, event_type)))
    sent = receiver.accepted(about(notification_id, "notification.sent"))[0]
    assert sent.headers["webhook-id"].startswith("msg_")
    assert sent.headers["webhook-signature"].startswith("v1,")
    assert sent.data["recipient"] == "ada@example.com"
    assert sent.data["template"] == "welcome"
    assert sent.data["attempt"] == 1
    assert sent.data["smtp_code"] == 250
    assert set(sent.payload) == {"type", "timestamp", "data"}
    # The same message reaches both endpoints with the same webhook-id.
    ids = {d.id for d in receiver.accepted(about(notification_id, "notification.sent"))}
    assert len(ids) == 1
    # Bob's key did not send it: its endpoint got nothing, not even scheduled.
    assert not receiver.received(lambda d: d.path == "/bob")
    assert hooks_redis.client().zcard(KEYS.webhook_endpoint_messages(bob_ep)) == 0
    assert bob.get(f"/api/v1/webhooks/endpoints/{alice_ep}").status_code == 404
    listed = [e["id"] for e in bob.get("/api/v1/webhooks/endpoints").json()]
    assert listed == [bob_ep]
    log = attempts(alice, alice_ep)
    assert {a["event_type"] for a in log} == {"notification.accepted", "notification.sent"}
    assert all(a["status"] == "succeeded" and a["response_code"] == 200 for a in log)
    assert all(a["response"] == "answered 200" and a["duration_ms"] >= 0 for a in log)


def test_550_gives_failed_and_451_gives_deferred_then_sent(
    as_user: Callable[[str], httpx.Client],
    receiver: WebhookReceiver,
    smtp: RecordingSMTPServer,
) -> None:
    alice = as_user(ALICE)
    add_endpoint(alice, receiver, "alice")
    smtp.fail(550, recipients=["gone@example.com"])
    smtp.fail(451, recipients=["later@example.com"], times=1)

    failed_id = send(alice, "gone@example.com")
    deferred_id = send(alice, "later@example.com")

    failed = receiver.wait_for(about(failed_id, "notification.failed"))[0]
    assert failed.data["smtp_code"] == 550
    assert "550" in failed.data["smtp_message"] or "refused" in failed.data["smtp_message"]
    deferred = receiver.wait_for(about(deferred_id, "notification.deferred"))[0]
    assert deferred.data["smtp_code"] == 451 and deferred.data["attempt"] == 1
    sent = receiver.wait_for(about(deferred_id, "notification.sent"))[0]
    assert sent.data["attempt"] == 2
    assert not receiver.accepted(about(failed_id, "notification.sent"))


def test_a_bounce_gives_bounced(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver, hooks_redis: RedisServer
) -> None:
    """The bounce arrives as Postmark's webhook (the bounces issue's code): bounced follows."""
    alice = as_user(ALICE)
    add_endpoint(alice, receiver, "alice", event_types=["notification.bounced"])
    notification_id = send(alice, "bouncy@example.com")
    wait_for_status(hooks_redis.url, notification_id, {"sent"})

    bounce = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "ID": 4242,
        "Email": "bouncy@example.com",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Metadata": {"notification_id": notification_id},
    }
    inbound = alice.post("/api/v1/webhooks/inbound/postmark", json=bounce, auth=POSTMARK_AUTH)
    assert inbound.status_code in (200, 202, 204), inbound.text
    bounced = receiver.wait_for(about(notification_id, "notification.bounced"))[0]
    assert bounced.data["recipient"] == "bouncy@example.com"
    assert bounced.data["smtp_code"] == 550
    assert bounced.data["status"] == "5.1.1"
    assert {d.type for d in receiver.received()} == {"notification.bounced"}


def test_receiver_failing_three_times_is_delivered_once_after_four_attempts(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver
) -> None:
    alice = as_user(ALICE)
    endpoint_id = add_endpoint(alice, receiver, "flaky", event_types=["notification.sent"])
    receiver.answer(500, 500, 500)

    notification_id = send(alice, "flaky@example.com")

    receiver.wait_for(about(notification_id, "notification.sent"))
    requests = receiver.received(about(notification_id))
    assert [d.answered for d in requests] == [500, 500, 500, 200]
    assert len({d.id for d in requests}) == 1  # the same webhook-id every time
    deadline = time.monotonic() + 10
    while len(log := attempts(alice, endpoint_id)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(a["attempt"], a["status"], a["response_code"]) for a in reversed(log)] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "failed", 500),
        (4, "succeeded", 200),
    ]
    assert log[-1]["next_attempt_at"] is not None  # a failed attempt says when the next is


def test_receiver_down_for_a_while_loses_nothing(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver, hooks_redis: RedisServer
) -> None:
    alice = as_user(ALICE)
    endpoint_id = add_endpoint(alice, receiver, "down")
    receiver.stop()  # down: connections refused
    ids = [send(alice, f"down{i}@example.com") for i in range(5)]
    for notification_id in ids:
        wait_for_status(hooks_redis.url, notification_id, {"sent"})
    # Down across retries of every message (10 of them: accepted + sent each).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = attempts(alice, endpoint_id)
        tried = {a["message_id"] for a in log if a["attempt"] >= 2}
        if len(tried) >= 10:
            break
        time.sleep(0.1)
    assert len(tried) >= 10, log[:5]
    assert all(a["response_code"] is None and a["error"] for a in log)

    restarted = WebhookReceiver(port=receiver.port)
    restarted.secrets = receiver.secrets
    restarted.start()
    try:
        for notification_id in ids:
            for event_type in ("notification.accepted", "notification.sent"):
                restarted.wait_for(about(notification_id, event_type))
        got = restarted.accepted()
        assert len(got) == len({d.id for d in got}) == 10  # each once, none lost
    finally:
        restarted.stop()


def test_rotated_secret_old_one_verifies_during_the_grace_period(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver
) -> None:
    alice = as_user(ALICE)
    endpoint_id = add_endpoint(alice, receiver, "rotating", event_types=["notification.sent"])
    rotated = alice.post(f"/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret_rotation_ends"] is not None
    receiver.secrets.append(rotated.json()["secret"])  # [old, new]

    during = send(alice, "rotate1@example.com")
    delivery = receiver.wait_for(about(during, "notification.sent"))[0]
    assert delivery.verified_by == [0, 1]  # each secret alone verifies it
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2

    # A rotation with no grace: only the newest secret signs from now on.
    again = alice.post(
        f"/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret", json={"grace_seconds": 0}
    )
    assert again.status_code == 200, again.text
    receiver.secrets.append(again.json()["secret"])  # [old, new, newest]
    after = send(alice, "rotate2@example.com")
    delivery = receiver.wait_for(about(after, "notification.sent"))[0]
    assert delivery.verified_by == [2]


def test_filter_to_failed_gets_nothing_else(
    as_user: Callable[[str], httpx.Client],
    receiver: WebhookReceiver,
    smtp: RecordingSMTPServer,
    hooks_redis: RedisServer,
) -> None:
    alice = as_user(ALICE)
    only_failed = add_endpoint(alice, receiver, "failed", event_types=["notification.failed"])
    add_endpoint(alice, receiver, "all")
    smtp.fail(550, recipients=["nope@example.com"])

    ok_id = send(alice, "fine@example.com")
    receiver.wait_for(at("/all", about(ok_id, "notification.sent")))
    failed_id = send(alice, "nope@example.com")
    receiver.wait_for(at("/all", about(failed_id, "notification.failed")))
    receiver.wait_for(at("/failed", about(failed_id)))

    assert {d.type for d in receiver.received(lambda d: d.path == "/failed")} == {
        "notification.failed"
    }
    # Nothing else was even scheduled for it (the fan-out of each event is one step).
    assert hooks_redis.client().zcard(KEYS.webhook_endpoint_messages(only_failed)) == 1


def test_private_addresses_refused_in_production(hooks_redis: RedisServer) -> None:
    settings = api_settings(
        hooks_redis.url,
        api_keys=[ALICE],
        notifier_env="production",
        mail_from="ops@example.org",
    )
    assert not settings.webhook_private_allowed
    server = ApiServer(settings).start()
    try:
        with server.client(key=key(ALICE)) as client:
            before = client.get("/api/v1/webhooks/endpoints").json()
            for url, words in (
                ("https://127.0.0.1/hook", "loopback"),
                ("https://localhost:8443/hook", "loopback"),
                ("https://10.1.2.3/hook", "private"),
                ("https://169.254.169.254/latest/meta-data", "metadata"),
                ("https://[::1]/hook", "loopback"),
                ("http://example.com/hook", "https"),
            ):
                response = client.post("/api/v1/webhooks/endpoints", json={"url": url})
                assert response.status_code == 422, (url, response.text)
                problem = response.json()
                assert response.headers["content-type"].startswith("application/problem+json")
                assert problem["errors"][0]["field"] == "url"
                assert words in problem["detail"], (url, problem["detail"])
            assert client.get("/api/v1/webhooks/endpoints").json() == before
    finally:
        server.stop()


def test_unknown_event_type_and_bad_replay_are_422(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver
) -> None:
    alice = as_user(ALICE)
    response = alice.post(
        "/api/v1/webhooks/endpoints",
        json={"url": receiver.url(), "event_types": ["notification.exploded"]},
    )
    assert response.status_code == 422
    assert "event_types" in response.json()["errors"][0]["field"]
    endpoint_id = add_endpoint(alice, receiver, "replay")
    response = alice.post(f"/api/v1/webhooks/endpoints/{endpoint_id}/replay", json={})
    assert response.status_code == 422
    assert alice.get("/api/v1/webhooks/endpoints/nope").status_code == 422
    # Changing endpoints needs the manage scope; a bad URL in a PATCH is refused too.
    reader = as_user(READER)
    denied = reader.post("/api/v1/webhooks/endpoints", json={"url": receiver.url()})
    assert denied.status_code == 403
    assert denied.json()["required_scope"] == "manage"
    bad = alice.patch(f"/api/v1/webhooks/endpoints/{endpoint_id}", json={"url": "ftp://x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "url"


def test_replay_failed_and_one_message(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver
) -> None:
    alice = as_user(ALICE)
    endpoint_id = add_endpoint(alice, receiver, "replay", event_types=["notification.sent"])
    receiver.answer(410)  # gone: the message fails and the endpoint is disabled
    notification_id = send(alice, "replay@example.com")
    deadline = time.monotonic() + 30
    while not alice.get(f"/api/v1/webhooks/endpoints/{endpoint_id}").json()["disabled"]:
        assert time.monotonic() < deadline, "the endpoint was not disabled"
        time.sleep(0.1)
    assert not receiver.accepted(about(notification_id))
    enabled = alice.patch(f"/api/v1/webhooks/endpoints/{endpoint_id}", json={"disabled": False})
    assert enabled.json()["disabled"] is False
    replayed = alice.post(
        f"/api/v1/webhooks/endpoints/{endpoint_id}/replay", json={"failed": True}
    ).json()
    assert replayed == {"replayed": 1, "expired": 0}
    first = receiver.wait_for(about(notification_id, "notification.sent"))[0]
    one = alice.post(
        f"/api/v1/webhooks/endpoints/{endpoint_id}/replay", json={"message_id": first.id}
    ).json()
    assert one["replayed"] == 1
    both = receiver.wait_for(about(notification_id, "notification.sent"), count=2)
    assert {d.id for d in both} == {first.id}
    since = alice.post(
        f"/api/v1/webhooks/endpoints/{endpoint_id}/replay", json={"since": "2000-01-01T00:00:00Z"}
    ).json()
    assert since["replayed"] == 1
    receiver.wait_for(about(notification_id, "notification.sent"), count=3)


def test_410_disables_the_endpoint_and_tells_the_others(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver
) -> None:
    alice = as_user(ALICE)
    gone = add_endpoint(alice, receiver, "gone", event_types=["notification.sent"])
    add_endpoint(alice, receiver, "ops", event_types=["endpoint.disabled"])
    receiver.answer(410)
    send(alice, "gone410@example.com")
    notice = receiver.wait_for(lambda d: d.type == "endpoint.disabled")[0]
    assert notice.data["endpoint_id"] == gone
    endpoint = alice.get(f"/api/v1/webhooks/endpoints/{gone}").json()
    assert endpoint["disabled"] is True and "410" in endpoint["disabled_reason"]
    enabled = alice.patch(f"/api/v1/webhooks/endpoints/{gone}", json={"disabled": False})
    assert enabled.json()["disabled"] is False


def test_cancelled_and_ignored_events(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver
) -> None:
    alice = as_user(ALICE)
    wanted = ["notification.cancelled", "event.ignored", "notification.failed"]
    add_endpoint(alice, receiver, "misc", event_types=wanted)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {
        "to": ["later@example.com"],
        "template": "welcome",
        "context": {"name": "Ada", "login_url": "https://example.com/login"},
        "send_at": later,
    }
    notification_id = alice.post("/api/v1/notifications", json=body).json()["id"]
    assert alice.delete(f"/api/v1/notifications/{notification_id}").status_code in (200, 202, 204)
    cancelled = receiver.wait_for(about(notification_id, "notification.cancelled"))[0]
    assert cancelled.data["recipient"] == "later@example.com"

    event = {"type": "nobody.listens", "source": "tests", "id": "evt-ignored-1", "data": {}}
    assert alice.post("/api/v1/events", json=event).status_code in (200, 202)
    ignored = receiver.wait_for(lambda d: d.type == "event.ignored")[0]
    assert ignored.data == {
        "event_id": "evt-ignored-1",
        "event_type": "nobody.listens",
        "source": "tests",
    }

    # A rule the event cannot satisfy (no address in it): a failed record, and its event.
    unroutable = {"type": "user.registered", "source": "tests", "id": "evt-no-email", "data": {}}
    assert alice.post("/api/v1/events", json=unroutable).json()["failures"]
    failed = receiver.wait_for(lambda d: d.data.get("event_id") == "evt-no-email")[0]
    assert failed.type == "notification.failed" and "data.email" in failed.data["smtp_message"]


def test_worker_serves_webhook_metrics(
    as_user: Callable[[str], httpx.Client], receiver: WebhookReceiver
) -> None:
    alice = as_user(ALICE)
    endpoint_id = add_endpoint(alice, receiver, "metrics", event_types=["notification.sent"])
    notification_id = send(alice, "metrics@example.com")
    receiver.wait_for(about(notification_id, "notification.sent"))
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics").text
        if f'notifier_webhook_backlog{{endpoint="{endpoint_id}"}} 0.0' in text:
            break
        time.sleep(0.2)
    assert f'notifier_webhook_backlog{{endpoint="{endpoint_id}"}} 0.0' in text
    assert 'notifier_webhook_deliveries_total{outcome="delivered"}' in text
    assert "notifier_webhook_request_duration_seconds_bucket" in text


def test_slow_receiver_does_not_hold_up_mail(
    as_user: Callable[[str], httpx.Client],
    receiver: WebhookReceiver,
    smtp: RecordingSMTPServer,
    hooks_redis: RedisServer,
) -> None:
    """A receiver that sleeps past WEBHOOK_TIMEOUT on every request, with every webhook slot
    of the worker already waiting on it: mail still all goes out, while the webhooks wait."""
    alice = as_user(ALICE)
    endpoint_id = add_endpoint(alice, receiver, "slow")
    receiver.sleep = 30.0
    warm_up = [send(alice, f"warm{i}@example.com") for i in range(5)]
    # Every slot (WEBHOOK_CONCURRENCY_PER_PROCESS=4) is now stuck on the slow receiver.
    deadline = time.monotonic() + 20
    while receiver.requests_started < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.requests_started >= 4
    smtp.wait_for(len(warm_up))

    count = 40
    started = time.monotonic()
    ids = [send(alice, f"slow{i}@example.com") for i in range(count)]
    smtp.wait_for(len(warm_up) + count, timeout=60)
    mail_seconds = time.monotonic() - started
    tried = len(attempts(alice, endpoint_id))
    events = (len(warm_up) + count) * 2
    print(
        f"\n{count} mails sent in {mail_seconds:.2f}s with every webhook slot stuck; by then "
        f"{tried} of {events} webhook messages had had an attempt (each timing out)"
    )
    for notification_id in ids:
        wait_for_status(hooks_redis.url, notification_id, {"sent"})
    assert len(smtp.messages) == len(warm_up) + count
    assert not receiver.accepted()  # no webhook was delivered...
    # ...and the mail did not wait for them: when it was all sent, fewer webhook attempts had
    # ended than there were mails, let alone webhook messages.
    assert tried < len(warm_up) + count
    alice.delete(f"/api/v1/webhooks/endpoints/{endpoint_id}")

"""Issue 14 item 5: named API keys with scopes; a key sees and acts on only what it created."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from notifier.settings import Settings
from tests.e2e.api.conftest import assert_problem, welcome
from tests.support.api_server import ApiServer, api_settings
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer

pytestmark = pytest.mark.usefixtures("worker")

KEYS = [
    "alice:alice-secret:send+read+manage",
    "bob:bob-secret:send+read+manage",
    "reader:reader-secret:read",
    "ops:ops-secret:read+admin",
    "legacy-bare-secret",
]


@pytest.fixture(scope="module")
def keyed_api(redis_server: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_settings(redis_server.url, api_keys=KEYS)).start()
    yield server
    server.stop()


@pytest.fixture
def as_key(keyed_api: ApiServer) -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def factory(secret: str) -> httpx.Client:
        clients.append(keyed_api.client(key=secret))
        return clients[-1]

    yield factory
    for http in clients:
        http.close()


def test_a_key_sees_and_acts_on_only_its_own_notifications(
    as_key: Callable[[str], httpx.Client],
) -> None:
    alice, bob = as_key("alice-secret"), as_key("bob-secret")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    created = alice.post("/api/v1/notifications", json=welcome("own@example.com", send_at=later))
    assert created.status_code == 202, created.text
    notification_id = created.json()["id"]
    path = f"/api/v1/notifications/{notification_id}"

    assert alice.get(path).json()["owner"] == "alice"
    assert_problem(bob.get(path), 404)
    assert_problem(bob.delete(path), 404)
    assert_problem(bob.post(f"{path}/retry"), 404)
    assert_problem(bob.get(f"/api/v1/task_status/{notification_id}"), 404)
    listed = bob.get("/api/v1/notifications", params={"limit": 200}).json()["items"]
    assert notification_id not in [item["id"] for item in listed]
    assert all(item["owner"] == "bob" for item in listed)

    # admin (and a bare secret, which has every scope) sees everyone's.
    assert as_key("ops-secret").get(path).status_code == 200
    assert as_key("legacy-bare-secret").get(path).status_code == 200
    assert alice.get(f"/api/v1/task_status/{notification_id}").json()["status"] == "PENDING"
    assert notification_id in [
        item["id"]
        for item in alice.get("/api/v1/notifications", params={"limit": 200}).json()["items"]
    ]
    assert alice.delete(path).json()["status"] == "cancelled"


def test_scopes_are_enforced(as_key: Callable[[str], httpx.Client]) -> None:
    reader = as_key("reader-secret")
    body = assert_problem(reader.post("/api/v1/notifications", json=welcome("x@example.com")), 403)
    assert body["required_scope"] == "send"
    assert_problem(reader.post("/api/v1/notifications/batch", json={"notifications": []}), 403)
    assert_problem(reader.post("/api/v1/events", json={"type": "user.registered"}), 403)
    assert_problem(reader.get("/api/v1/calculate", params={"x": 1, "y": 2}), 403)
    some_id = str(uuid.uuid4())
    assert_problem(reader.delete(f"/api/v1/notifications/{some_id}"), 403)
    assert_problem(reader.post(f"/api/v1/notifications/{some_id}/retry"), 403)
    assert reader.get("/api/v1/notifications").status_code == 200
    ops = as_key("ops-secret")  # read+admin: sees everything, sends nothing
    assert_problem(ops.post("/api/v1/notifications", json=welcome("x@example.com")), 403)


def test_calculate_tasks_belong_to_the_key_that_dispatched_them(
    as_key: Callable[[str], httpx.Client],
) -> None:
    alice, bob = as_key("alice-secret"), as_key("bob-secret")
    task_id = alice.get("/api/v1/calculate", params={"x": 2, "y": 40}).json()["task_id"]
    assert_problem(bob.get(f"/api/v1/task_status/{task_id}"), 404)
    assert alice.get(f"/api/v1/task_status/{task_id}").status_code == 200
    assert as_key("ops-secret").get(f"/api/v1/task_status/{task_id}").status_code == 200
    assert_problem(alice.get(f"/api/v1/task_status/{uuid.uuid4()}"), 404)


def test_event_dedupe_is_per_key(
    as_key: Callable[[str], httpx.Client], smtp: RecordingSMTPServer
) -> None:
    event = {
        "type": "user.registered",
        "source": "/tests/hardening",
        "id": str(uuid.uuid4()),
        "data": {"email": "first@example.com", "name": "Ada"},
    }
    alice, bob = as_key("alice-secret"), as_key("bob-secret")
    first = alice.post("/api/v1/events", json=event)
    assert first.status_code == 202, first.text
    second = bob.post(
        "/api/v1/events", json={**event, "data": {"email": "second@example.com", "name": "Bo"}}
    )
    assert second.status_code == 202, second.text
    assert second.json()["duplicate"] is False
    assert set(second.json()["notification_ids"]).isdisjoint(first.json()["notification_ids"])
    smtp.wait_for(1, to="second@example.com")
    again = alice.post("/api/v1/events", json=event)
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_api_keys_setting_refuses_unknown_scopes(
    make_api: Callable[[Settings], ApiServer], redis_server: RedisServer
) -> None:
    from notifier.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown scope 'sned'"):
        api_settings(redis_server.url, api_keys=["app:secret:sned"])

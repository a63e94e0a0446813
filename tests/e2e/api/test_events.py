"""POST /api/v1/events: routed to notifications, once per (source, id); bad envelopes are 422."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.api.conftest import StoreProbe, assert_nothing_sent, assert_problem
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer

pytestmark = pytest.mark.usefixtures("worker")


def test_event_is_routed_and_a_repeat_is_a_duplicate(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    event = {
        "type": "user.registered",
        "source": "/tests/api",
        "id": str(uuid.uuid4()),
        "data": {"email": "event@example.com", "name": "Ada", "locale": "ru"},
    }
    first = client.post("/api/v1/events", json=event)
    assert first.status_code == 202, first.text
    result = first.json()
    assert result["event_id"] == event["id"] and not result["duplicate"]
    [notification_id] = result["notification_ids"]
    smtp.wait_for(1, to="event@example.com")
    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    assert record.event_id == event["id"] and record.locale == "ru"

    again = client.post("/api/v1/events", json=event)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["notification_ids"] == [notification_id]
    assert_nothing_sent(client, smtp, expected=1)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"data": {"email": "x@example.com"}}, "type"),
        ({"type": "user.registered"}, "data"),
        ({"type": "user registered", "data": {}}, "type"),
        ({"type": "user.registered", "data": {}, "specversion": "0.3"}, "specversion"),
    ],
)
def test_invalid_envelope_is_422_and_queues_nothing(
    client: httpx.Client,
    smtp: RecordingSMTPServer,
    probe: StoreProbe,
    event: dict[str, object],
    field: str,
) -> None:
    before = probe.snapshot()
    assert_problem(client.post("/api/v1/events", json=event), 422, field=field)
    assert probe.snapshot() == before
    assert_nothing_sent(client, smtp)


def test_events_need_an_api_key(api_server_anonymous: httpx.Client) -> None:
    response = api_server_anonymous.post(
        "/api/v1/events", json={"type": "user.registered", "data": {}}
    )
    assert_problem(response, 401)

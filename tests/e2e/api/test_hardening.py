"""Issue 14 (hardening): what a security review and a fuzz run found, through the real API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.main import create_app
from notifier.settings import Settings
from tests.e2e.api.conftest import StoreProbe, assert_problem, welcome
from tests.support.api_server import ApiServer, api_settings
from tests.support.ports import free_port
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer

pytestmark = pytest.mark.usefixtures("worker")

LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat()


def test_relay_control_header_is_422_naming_it(client: httpx.Client, probe: StoreProbe) -> None:
    before = probe.snapshot()
    body = welcome("ada@example.com", headers={"X-SMTPAPI": '{"to": ["a@b.c", "d@e.f"]}'})
    assert_problem(client.post("/api/v1/notifications", json=body), 422, field="headers.X-SMTPAPI")
    assert probe.snapshot() == before


def test_without_api_keys_the_api_refuses_a_non_loopback_bind(redis_server: RedisServer) -> None:
    env = {**os.environ, "API_KEYS": "", "NOTIFIER_ENV": "development"}
    env["REDIS_URL"] = redis_server.url
    port = str(free_port())
    try:
        result = subprocess.run(
            [sys.executable, "-m", "notifier.cli", "api", "--host", "0.0.0.0", "--port", port],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the API started on 0.0.0.0 without API keys")
    assert result.returncode != 0
    assert "API_KEYS" in result.stderr and "Traceback" not in result.stderr


def test_without_api_keys_the_app_answers_only_on_loopback(redis_server: RedisServer) -> None:
    # Served some other way than `notifier api` (here: an ASGI client whose server address
    # is not loopback), an app without keys answers nobody.
    app = create_app(api_settings(redis_server.url, api_keys=[]))

    async def get(base_url: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            return await http.get("/api/v1/templates")

    assert_problem(asyncio.run(get("http://api.example.org")), 401)
    assert asyncio.run(get("http://127.0.0.1:8000")).status_code == 200


def test_a_batch_pays_the_rate_limit_per_notification(
    make_api: Callable[[Settings], ApiServer], redis_server: RedisServer
) -> None:
    settings = api_settings(
        redis_server.url, rate_limit="10/hour", redis_prefix=f"h14-{uuid.uuid4().hex[:8]}"
    )
    batch = {"notifications": [welcome(f"b{i}@example.com", send_at=LATER) for i in range(6)]}
    with make_api(settings).client() as http:
        assert http.post("/api/v1/notifications/batch", json=batch).status_code == 202
        limited = assert_problem(http.post("/api/v1/notifications/batch", json=batch), 429)
        assert "Rate limit" in limited["detail"]
        too_big = {"notifications": batch["notifications"] * 2}
        assert_problem(http.post("/api/v1/notifications/batch", json=too_big), 422)


def test_repeated_authentication_failures_are_throttled_per_client(
    make_api: Callable[[Settings], ApiServer], redis_server: RedisServer
) -> None:
    settings = api_settings(
        redis_server.url, auth_failure_limit="3/hour", redis_prefix=f"h14-{uuid.uuid4().hex[:8]}"
    )
    server = make_api(settings)
    with server.client(key="guess") as guessing, server.client() as good:
        for _ in range(3):
            assert_problem(guessing.get("/api/v1/templates"), 401)
        assert_problem(guessing.get("/api/v1/templates"), 429)
        # While blocked, even a right key from that address is not looked at.
        assert_problem(good.get("/api/v1/templates"), 429)


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("context", "field"),
    [({"n": 2**70}, "context.n"), ({"list": [1, -(2**64)]}, "context.list[1]")],
)
def test_integers_beyond_64_bits_are_422(
    client: httpx.Client, probe: StoreProbe, context: dict[str, object], field: str
) -> None:
    before = probe.snapshot()
    body = welcome("ada@example.com", context={"name": "Ada", "login_url": "u", **context})
    response = client.post(
        "/api/v1/notifications", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert_problem(response, 422, field=field)
    assert probe.snapshot() == before


def test_deeply_nested_context_is_422(client: httpx.Client, probe: StoreProbe) -> None:
    before = probe.snapshot()
    body = welcome("ada@example.com")
    body["context"].update(deep=nested(300))
    assert_problem(client.post("/api/v1/notifications", json=body), 422, field="context")
    assert probe.snapshot() == before


def test_calculate_with_a_huge_integer_is_422(client: httpx.Client) -> None:
    response = client.get(
        "/api/v1/calculate", params={"x": "1109009509479530386461223339163648", "y": 1}
    )
    assert_problem(response, 422, field="x")


@pytest.mark.parametrize("extra", [{"n": 2**70}, {"deep": nested(300)}], ids=["int", "deep"])
def test_event_with_a_bad_address_and_odd_data_keeps_a_failure_record(
    client: httpx.Client, redis_server: RedisServer, extra: dict[str, object]
) -> None:
    event = {
        "type": "user.registered",
        "source": "/tests/hardening",
        "id": str(uuid.uuid4()),
        "data": {"email": "ada@example..com", "name": "Ada", **extra},
    }
    response = client.post("/api/v1/events", json=event)
    assert response.status_code == 202, response.text
    [notification_id] = response.json()["notification_ids"]
    record = wait_for_status(redis_server.url, notification_id, {"failed"})
    assert record.reason


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/api/v1/notifications/{id}"),
        ("POST", "/api/v1/notifications/{id}/retry"),
        ("DELETE", "/api/v1/notifications/{id}"),
        ("GET", "/api/v1/task_status/{id}"),
    ],
)
def test_malformed_ids_are_422_not_500(client: httpx.Client, method: str, template: str) -> None:
    created = client.post("/api/v1/notifications", json=welcome("id@example.com", send_at=LATER))
    malformed = f"{created.json()['id']}:attempts"
    response = client.request(method, template.format(id=malformed))
    assert_problem(response, 422)


def test_send_at_beyond_record_retention_is_422(client: httpx.Client, probe: StoreProbe) -> None:
    before = probe.snapshot()
    too_late = (datetime.now(UTC) + timedelta(days=8)).isoformat()  # retention: 7 days
    body = welcome("late@example.com", send_at=too_late)
    assert_problem(client.post("/api/v1/notifications", json=body), 422, field="send_at")
    assert probe.snapshot() == before
    soon = (datetime.now(UTC) + timedelta(days=6)).isoformat()
    created = client.post("/api/v1/notifications", json=welcome("soon@example.com", send_at=soon))
    assert created.status_code == 202, created.text
    client.delete(f"/api/v1/notifications/{created.json()['id']}")


def test_a_non_ascii_local_part_is_sent_with_smtputf8(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    created = client.post("/api/v1/notifications", json=welcome("иван@пример.рф"))
    assert created.status_code == 202, created.text
    # aiosmtpd takes a non-ASCII mailbox only in a transaction opened with SMTPUTF8.
    smtp.wait_for(1, to="иван@пример.рф")
    wait_for_status(redis_server.url, created.json()["id"], {"sent"})


def test_openapi_documents_problem_json_and_400_on_every_error(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                # HTML pages (the /u/ unsubscribe pages) answer their errors as pages.
                if int(status) >= 400 and "text/html" not in response["content"]:
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )
            if "requestBody" in operation:
                assert "400" in responses, (method, path)
    listing = document["paths"]["/api/v1/notifications"]["get"]["parameters"]
    [status] = [p for p in listing if p["name"] == "status"]
    enum = status["schema"].get("enum") or status["schema"]["anyOf"][0]["enum"]
    assert "failed" in enum and "queued" in enum


def test_an_unreadable_body_is_a_documented_400_problem(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/notifications",
        content=b'{"to": "\xc3\x28"}',  # not UTF-8
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400)
    responses = client.get("/openapi.json").json()["paths"]["/api/v1/notifications"]["post"]
    assert "application/problem+json" in responses["responses"]["400"]["content"]


def test_health_worker_wait_has_sensible_bounds(client: httpx.Client) -> None:
    assert_problem(
        client.get("/api/v1/health/worker", params={"wait": "5e-324"}), 422, field="wait"
    )


def test_options_and_405_answers_carry_allow(client: httpx.Client) -> None:
    for method in ("OPTIONS", "PUT"):
        response = client.request(method, "/api/v1/notifications")
        assert response.status_code == 405, (method, response.text)
        allowed = set(response.headers["allow"].replace(" ", "").split(","))
        assert {"GET", "POST"} <= allowed and method not in allowed

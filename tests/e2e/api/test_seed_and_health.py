"""The seed's task_status/calculate flow, the worker round trip, probes, templates and docs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.settings import Settings
from notifier.storage.keys import Keys
from tests.e2e.api.conftest import StoreProbe, assert_nothing_sent, assert_problem, welcome
from tests.support.api_server import ApiServer, api_settings
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer

pytestmark = pytest.mark.usefixtures("worker")


def get_task_status(client: httpx.Client, task_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
    """The seed's client loop: poll until the task is ready (SUCCESS, FAILURE or REVOKED)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/v1/task_status/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("SUCCESS", "FAILURE", "REVOKED") or time.monotonic() > deadline:
            return body
        assert set(body) == {"task_id", "status"}
        time.sleep(0.05)


def test_task_status_of_a_notification(client: httpx.Client, smtp: RecordingSMTPServer) -> None:
    notification_id = client.post(
        "/api/v1/notifications", json=welcome("status@example.com")
    ).json()["id"]
    body = get_task_status(client, notification_id)
    assert body["status"] == "SUCCESS", body
    assert set(body) == {"task_id", "status", "result"}
    assert body["task_id"] == notification_id
    assert body["result"]["status"] == "sent"
    message = smtp.wait_for(1, to="status@example.com")[0]
    assert body["result"]["message_id"] == message.message_id


def test_task_status_of_a_failed_and_a_cancelled_notification(
    client: httpx.Client, smtp: RecordingSMTPServer
) -> None:
    smtp.fail(550, recipients=["nope@example.com"])
    failed_id = client.post("/api/v1/notifications", json=welcome("nope@example.com")).json()["id"]
    body = get_task_status(client, failed_id)
    assert body["status"] == "FAILURE" and set(body) == {"task_id", "status", "error"}
    assert "550" in body["error"]

    scheduled = client.post(
        "/api/v1/notifications",
        json=welcome(
            "never@example.com", send_at=(datetime.now(UTC) + timedelta(days=1)).isoformat()
        ),
    ).json()["id"]
    assert client.get(f"/api/v1/task_status/{scheduled}").json() == {
        "task_id": scheduled,
        "status": "PENDING",
    }
    client.delete(f"/api/v1/notifications/{scheduled}")
    body = get_task_status(client, scheduled)
    assert body["status"] == "REVOKED" and body["error"]


def test_task_status_of_an_unknown_task_is_pending(client: httpx.Client) -> None:
    task_id = str(uuid.uuid4())
    assert client.get(f"/api/v1/task_status/{task_id}").json() == {
        "task_id": task_id,
        "status": "PENDING",
    }


def test_calculate_then_task_status(client: httpx.Client) -> None:
    response = client.get("/api/v1/calculate", params={"x": 2, "y": 3})
    assert response.status_code == 200, response.text
    sent = response.json()
    assert sent["message"] == "Calculation task sent."
    body = get_task_status(client, sent["task_id"])
    assert body == {"task_id": sent["task_id"], "status": "SUCCESS", "result": 5}
    assert_problem(client.get("/api/v1/calculate", params={"x": "two", "y": 3}), 422, field="x")


def test_worker_health_round_trip(client: httpx.Client) -> None:
    response = client.get("/api/v1/health/worker")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["result"] == 5
    assert body["seconds"] >= 0


def test_worker_health_is_503_without_a_worker(
    make_api: Callable[[Settings], ApiServer], tmp_path: Path
) -> None:
    lonely = RedisServer(tmp_path / "redis")
    lonely.start()
    try:
        server = make_api(api_settings(lonely.url))
        with server.client() as http:
            response = http.get("/api/v1/health/worker", params={"wait": 0.5})
            problem = assert_problem(response, 503)
            assert "No worker" in problem["detail"]
            assert response.headers["retry-after"]
        # The probe message was taken back off the queue.
        assert lonely.client().llen(Keys().queue) == 0
    finally:
        lonely.kill()


def test_probes(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_redis_down_answers_503_and_recovers(
    make_api: Callable[[Settings], ApiServer], tmp_path: Path
) -> None:
    private = RedisServer(tmp_path / "redis")
    private.start()
    try:
        server = make_api(api_settings(private.url))
        with server.client() as http:
            assert http.get("/readyz").status_code == 200
            private.stop()

            ready = http.get("/readyz")
            assert_problem(ready, 503)
            assert int(ready.headers["retry-after"]) >= 1
            for response in (
                http.post("/api/v1/notifications", json=welcome("down@example.com")),
                http.post(
                    "/api/v1/notifications/batch", json={"notifications": [welcome("d@x.io")]}
                ),
                http.get(f"/api/v1/notifications/{uuid.uuid4()}"),
                http.get("/api/v1/notifications", params={"status": "failed"}),
                http.get(f"/api/v1/task_status/{uuid.uuid4()}"),
                http.get("/api/v1/calculate", params={"x": 1, "y": 2}),
                http.get("/api/v1/health/worker", params={"wait": 0.5}),
            ):
                assert_problem(response, 503)
                assert int(response.headers["retry-after"]) >= 1
            # Validation needs no Redis: a bad request is still a 422, not a 503.
            assert_problem(http.post("/api/v1/notifications", json=welcome("bad")), 422)

            private.start()
            deadline = time.monotonic() + 15
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the API did not reconnect to Redis"
                time.sleep(0.1)
            response = http.post("/api/v1/notifications", json=welcome("back@example.com"))
            assert response.status_code == 202, response.text
        assert private.client().hget(Keys().record(response.json()["id"]), "status") == "queued"
    finally:
        private.kill()


# Templates.


def test_templates_are_listed(client: httpx.Client) -> None:
    body = client.get("/api/v1/templates").json()
    by_name = {t["name"]: t for t in body["templates"]}
    assert {"welcome", "password_reset", "email_verification", "plain"} <= set(by_name)
    reset = by_name["password_reset"]
    assert set(reset["locales"]) >= {"en", "ru"}
    assert set(reset["required_variables"]) == {"name", "reset_url"}
    assert "expires_in_minutes" in reset["optional_variables"]
    assert reset["description"]
    assert body["default_locale"] == "en"


def test_render_previews_without_sending(
    client: httpx.Client, smtp: RecordingSMTPServer, probe: StoreProbe
) -> None:
    before = probe.snapshot()
    response = client.post(
        "/api/v1/templates/welcome/render",
        json={"context": {"name": "Ада", "login_url": "https://example.com/l"}, "locale": "ru-RU"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["locale"] == "ru"
    assert "Ада" in body["text"] and "Ада" in body["html"]
    assert body["subject"] and "style=" in body["html"]

    assert_problem(client.post("/api/v1/templates/nope/render", json={"context": {}}), 404)
    missing = client.post(
        "/api/v1/templates/password_reset/render", json={"context": {"name": "Ada"}}
    )
    problem = assert_problem(missing, 422, field="context.reset_url")
    assert "reset_url" in problem["detail"]
    assert probe.snapshot() == before
    assert_nothing_sent(client, smtp)


def test_openapi_documents_endpoints_with_examples(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/notifications",
        "/api/v1/notifications/batch",
        "/api/v1/notifications/{notification_id}",
        "/api/v1/notifications/{notification_id}/retry",
        "/api/v1/templates",
        "/api/v1/templates/{name}/render",
        "/api/v1/task_status/{task_id}",
        "/api/v1/calculate",
        "/api/v1/health/worker",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    components = schema["components"]["schemas"]
    assert components["NotificationRequest"]["examples"]
    assert components["Accepted"]["examples"]
    post = paths["/api/v1/notifications"]["post"]
    assert {"202", "409", "413", "422", "401", "429", "503"} <= set(post["responses"])
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert client.get("/docs").status_code == 200

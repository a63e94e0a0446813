"""Every rule a request must pass: the 4xx, its problem body, and that nothing was queued."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.main import create_app
from notifier.errors import ConfigurationError
from notifier.settings import Settings
from notifier.storage.keys import Keys
from tests.e2e.api.conftest import StoreProbe, assert_nothing_sent, assert_problem, welcome
from tests.support.api_server import API_KEY, OTHER_API_KEY, ApiServer, api_settings
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer

pytestmark = pytest.mark.usefixtures("worker")

INVALID = [
    pytest.param(welcome("not-an-address"), "to[0]", id="bad-address"),
    pytest.param(welcome(["ok@example.com", "a@b@c"]), "to[1]", id="bad-second-address"),
    pytest.param(welcome("ok@example.com", cc=["@example.com"]), "cc[0]", id="bad-cc"),
    pytest.param(
        welcome("ok@example.com", subject="Hi\r\nBcc: x@evil.example"), "subject", id="crlf-subject"
    ),
    pytest.param(
        welcome("ok@example.com", headers={"X-Tag": "a\nBcc: x@evil.example"}),
        "headers.X-Tag",
        id="crlf-header",
    ),
    pytest.param(
        welcome("ok@example.com", headers={"Bcc": "x@evil.example"}),
        "headers.Bcc",
        id="non-x-header",
    ),
    pytest.param(
        {"to": "ok@example.com", "template": "no_such_template", "context": {}},
        "template",
        id="unknown-template",
    ),
    pytest.param(
        {"to": "ok@example.com", "template": "password_reset", "context": {"name": "Ada"}},
        "context.reset_url",
        id="missing-variable",
    ),
    pytest.param(welcome([f"r{i}@example.com" for i in range(51)]), "to", id="too-many-recipients"),
    pytest.param(
        welcome(
            [f"r{i}@example.com" for i in range(30)], bcc=[f"b{i}@example.com" for i in range(21)]
        ),
        "to",
        id="too-many-with-bcc",
    ),
    pytest.param(
        welcome("ok@example.com", send_at="2030-01-01T10:00:00"), "send_at", id="naive-send-at"
    ),
    pytest.param({"to": "ok@example.com", "subject": "Hi"}, None, id="no-body-no-template"),
    pytest.param(welcome("ok@example.com", unknown_field=1), "unknown_field", id="unknown-field"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
def test_invalid_notification_is_rejected_and_nothing_queued(
    client: httpx.Client,
    smtp: RecordingSMTPServer,
    probe: StoreProbe,
    body: dict[str, Any],
    field: str | None,
) -> None:
    before = probe.snapshot()
    records = probe.record_keys()

    problem = assert_problem(client.post("/api/v1/notifications", json=body), 422, field=field)

    assert problem["errors"]
    assert probe.snapshot() == before
    assert probe.record_keys() == records
    assert_nothing_sent(client, smtp)


def test_malformed_json_is_a_422_problem(client: httpx.Client, probe: StoreProbe) -> None:
    before = probe.snapshot()
    response = client.post(
        "/api/v1/notifications", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422)
    assert probe.snapshot() == before


def test_unknown_locale_falls_back(client: httpx.Client, smtp: RecordingSMTPServer) -> None:
    response = client.post("/api/v1/notifications", json=welcome("fr@example.com", locale="fr-FR"))
    assert response.status_code == 202, response.text
    record = client.get(response.headers["location"]).json()
    assert record["locale"] == "en"
    smtp.wait_for(1, to="fr@example.com")


def test_body_over_the_limit_is_413_by_length_and_while_streaming(
    make_api: Callable[[Settings], ApiServer],
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
    probe: StoreProbe,
) -> None:
    server = make_api(api_settings(redis_server.url, max_body_bytes=2048))
    before = probe.snapshot()
    big = welcome("big@example.com", metadata={"blob": "x" * 4096})
    with server.client() as http:
        assert_problem(http.post("/api/v1/notifications", json=big), 413)

        def chunks() -> Any:  # no Content-Length: sent chunked
            for _ in range(10):
                yield b" " * 512

        response = http.post(
            "/api/v1/notifications", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_problem(response, 413)
        assert probe.snapshot() == before
        assert_nothing_sent(http, smtp)


# Authentication.


def test_missing_or_wrong_key_is_401(
    api_server: ApiServer, smtp: RecordingSMTPServer, probe: StoreProbe
) -> None:
    before = probe.snapshot()
    with api_server.client(key=None) as anonymous:
        response = anonymous.post("/api/v1/notifications", json=welcome("a@example.com"))
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_problem(anonymous.get("/api/v1/templates"), 401)
        assert_problem(anonymous.get("/api/v1/notifications"), 401)
        wrong = anonymous.post(
            "/api/v1/notifications",
            json=welcome("a@example.com"),
            headers={"X-API-Key": API_KEY + "x"},
        )
        assert_problem(wrong, 401)
        bearer_wrong = anonymous.post(
            "/api/v1/notifications",
            json=welcome("a@example.com"),
            headers={"Authorization": "Bearer nope"},
        )
        assert_problem(bearer_wrong, 401)
        basic = anonymous.post(
            "/api/v1/notifications",
            json=welcome("a@example.com"),
            headers={"Authorization": f"Basic {API_KEY}"},
        )
        assert_problem(basic, 401)
        # Probes and docs stay open.
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/docs").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200
    assert probe.snapshot() == before
    with api_server.client() as http:
        assert_nothing_sent(http, smtp)


def test_both_key_headers_are_accepted(api_server: ApiServer, smtp: RecordingSMTPServer) -> None:
    with api_server.client(key=None) as http:
        bearer = http.post(
            "/api/v1/notifications",
            json=welcome("bearer@example.com"),
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        header = http.post(
            "/api/v1/notifications",
            json=welcome("header@example.com"),
            headers={"X-API-Key": OTHER_API_KEY},
        )
    assert bearer.status_code == 202, bearer.text
    assert header.status_code == 202, header.text
    smtp.wait_for(1, to="bearer@example.com")
    smtp.wait_for(1, to="header@example.com")


def test_production_without_keys_refuses_to_start(redis_server: RedisServer) -> None:
    settings = api_settings(
        redis_server.url, notifier_env="production", api_keys=[], mail_from="ops@example.org"
    )
    with pytest.raises(ConfigurationError, match="API_KEYS"):
        create_app(settings)


def test_development_without_keys_runs_open(
    make_api: Callable[[Settings], ApiServer],
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="api.auth"):
        server = make_api(api_settings(redis_server.url, api_keys=[]))
    assert any("API_KEYS is not set" in r.getMessage() for r in caplog.records)
    with server.client(key=None) as http:
        response = http.post("/api/v1/notifications", json=welcome("open@example.com"))
    assert response.status_code == 202, response.text
    smtp.wait_for(1, to="open@example.com")


# Rate limit.


def test_rate_limit_answers_429_with_retry_after(
    make_api: Callable[[Settings], ApiServer],
    client: httpx.Client,
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
    probe: StoreProbe,
) -> None:
    server = make_api(api_settings(redis_server.url, rate_limit="3/minute", redis_prefix="rl"))
    with server.client() as http:
        for _ in range(3):
            assert http.get("/api/v1/templates").status_code == 200
        before = probe.snapshot()
        limited = http.post("/api/v1/notifications", json=welcome("limited@example.com"))
        problem = assert_problem(limited, 429)
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert "retry" in problem["detail"].lower()
        assert probe.snapshot() == before
    # Another key has its own bucket; the buckets live in Redis under the prefix.
    with server.client(key=OTHER_API_KEY) as other:
        assert other.get("/api/v1/templates").status_code == 200
    assert len(list(redis_server.client().scan_iter(Keys("rl").rate_limit("*")))) == 2
    # A second API process shares the buckets.
    twin = make_api(api_settings(redis_server.url, rate_limit="3/minute", redis_prefix="rl"))
    with twin.client() as http:
        assert_problem(http.get("/api/v1/templates"), 429)
    assert_nothing_sent(client, smtp)


# Idempotency.


def test_idempotency_key_returns_the_original_notification(
    client: httpx.Client, smtp: RecordingSMTPServer, probe: StoreProbe
) -> None:
    key = {"Idempotency-Key": "order-1234-welcome"}
    body = welcome("idem@example.com")
    first = client.post("/api/v1/notifications", json=body, headers=key)
    assert first.status_code == 202, first.text
    smtp.wait_for(1, to="idem@example.com")

    before = probe.snapshot()
    again = client.post("/api/v1/notifications", json=body, headers=key)
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert probe.snapshot() == before

    different = client.post(
        "/api/v1/notifications", json=welcome("someone-else@example.com"), headers=key
    )
    problem = assert_problem(different, 409)
    assert problem["original_id"] == first.json()["id"]
    assert probe.snapshot() == before

    # Keys are scoped per API key: another caller's identical key is a new notification.
    other = client.post(
        "/api/v1/notifications",
        json=body,
        headers={**key, "Authorization": f"Bearer {OTHER_API_KEY}"},
    )
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    smtp.wait_for(2, to="idem@example.com")
    assert_nothing_sent(client, smtp, expected=2)


def test_idempotency_key_must_be_printable(client: httpx.Client, probe: StoreProbe) -> None:
    before = probe.snapshot()
    response = client.post(
        "/api/v1/notifications",
        json=welcome("idem2@example.com"),
        headers={"Idempotency-Key": "has space"},
    )
    assert_problem(response, 422, field="Idempotency-Key")
    assert probe.snapshot() == before

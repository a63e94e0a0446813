"""API test fixtures: the real app served by uvicorn, against the session Redis and worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from notifier.settings import Settings
from notifier.storage.keys import Keys
from tests.support.api_server import PREFIX, ApiServer, api_settings
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer


@pytest.fixture(scope="session")
def api_server(redis_server: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_settings(redis_server.url)).start()
    yield server
    server.stop()


@pytest.fixture
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with api_server.client() as http:
        yield http


@pytest.fixture
def api_server_anonymous(api_server: ApiServer) -> Iterator[httpx.Client]:
    """A client of the session API that presents no key."""
    with api_server.client(key=None) as http:
        yield http


@pytest.fixture
def make_api() -> Iterator[Callable[[Settings], ApiServer]]:
    """Factory for APIs with their own settings; all are stopped after the test."""
    started: list[ApiServer] = []

    def factory(settings: Settings) -> ApiServer:
        server = ApiServer(settings).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def welcome(to: str | list[str], **extra: Any) -> dict[str, Any]:
    """A valid ``welcome`` notification body."""
    body: dict[str, Any] = {
        "to": to,
        "template": "welcome",
        "context": {"name": "Ada", "login_url": "https://example.com/login"},
    }
    body.update(extra)
    return body


KEYS = Keys(PREFIX)


class StoreProbe:
    """What a rejected request must not change: records, queue, schedule."""

    def __init__(self, server: RedisServer) -> None:
        self.redis = server.client()

    def snapshot(self) -> tuple[int, int, int]:
        return (
            self.redis.zcard(KEYS.all),
            self.redis.llen(KEYS.queue),
            self.redis.zcard(KEYS.scheduled),
        )

    def record_keys(self) -> int:
        return sum(1 for _ in self.redis.scan_iter(KEYS.record("*"), count=1000))


@pytest.fixture
def probe(redis_server: RedisServer) -> Iterator[StoreProbe]:
    found = StoreProbe(redis_server)
    yield found
    found.redis.close()


def assert_nothing_sent(
    client: httpx.Client, smtp: RecordingSMTPServer, *, expected: int = 0
) -> None:
    """Send a sentinel and wait for it: anything queued before it would have arrived too."""
    response = client.post("/api/v1/notifications", json=welcome("sentinel@example.com"))
    assert response.status_code == 202, response.text
    smtp.wait_for(1, to="sentinel@example.com")
    others = [m for m in smtp.messages if "sentinel@example.com" not in m.rcpt_tos]
    assert len(others) == expected, [m.rcpt_tos for m in others]


def assert_problem(
    response: httpx.Response, status: int, *, field: str | None = None
) -> dict[str, Any]:
    """A problem+json answer with ``status``; with ``field``, an error naming it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    if field is not None:
        assert field in [error["field"] for error in body["errors"]], body
    return body

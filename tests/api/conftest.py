"""The real API app served by uvicorn in a thread, against the session Redis and worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from api.main import create_app
from notifier.settings import Settings, load_settings
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO

API_KEY = "test-key-one"
OTHER_API_KEY = "test-key-two"
PREFIX = "notifier"


def api_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings for an API under test; the environment's API_KEYS/RATE_LIMIT do not leak in."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "templates_dir": REPO / "templates",
        "notifier_env": "development",
        "api_keys": [API_KEY, OTHER_API_KEY],
        "rate_limit": None,
        "retry_backoff_base": 0.2,
        "retry_backoff_max": 1.0,
        "send_timeout": 10,
        "task_time_limit": 30,
        "broker_visibility_timeout": 60,
    }
    values.update(overrides)
    return load_settings(**values)


class ApiServer:
    """``create_app(settings)`` served by uvicorn on a free port in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws="none",
            http="h11",
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def client(self, key: str | None = API_KEY, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(options.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)


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


class StoreProbe:
    """What a rejected request must not change: records, queue, schedule."""

    def __init__(self, server: RedisServer) -> None:
        self.redis = server.client()

    def snapshot(self) -> tuple[int, int, int]:
        return (
            self.redis.zcard(f"{PREFIX}:all"),
            self.redis.llen("celery"),
            self.redis.zcard(f"{PREFIX}:scheduled"),
        )

    def record_keys(self) -> int:
        return sum(1 for _ in self.redis.scan_iter(f"{PREFIX}:n:*", count=1000))


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

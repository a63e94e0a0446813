"""The real API app served by uvicorn in a thread, with the settings tests use."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn

from api.main import create_app
from notifier.settings import Settings, load_settings
from tests.support.ports import free_port
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

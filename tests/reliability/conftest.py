"""Fixtures for the fault-injection suite: private Redis servers and worker environments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import service_env

#: Fast but valid timing for workers the suite kills: the settings validator wants
#: BROKER_VISIBILITY_TIMEOUT > RETRY_BACKOFF_MAX + TASK_TIME_LIMIT, and
#: SEND_TIMEOUT < TASK_TIME_LIMIT.
FAST_TIMING = {
    "SEND_TIMEOUT": "2",
    "TASK_TIME_LIMIT": "5",
    "RETRY_BACKOFF_BASE": "0.1",
    "RETRY_BACKOFF_MAX": "1",
    "BROKER_VISIBILITY_TIMEOUT": "8",
    "SCHEDULER_INTERVAL": "0.1",
    # The webhook request runs inside its task: WEBHOOK_TIMEOUT < TASK_TIME_LIMIT.
    "WEBHOOK_TIMEOUT": "2",
}


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for a private redis-server per test (tests that restart it or need no other
    worker on it); killed afterwards."""
    servers: list[RedisServer] = []

    def factory(*, appendonly: bool = False) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}", appendonly=appendonly)
        server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.kill()


@pytest.fixture
def private_env(
    smtp: RecordingSMTPServer,
) -> Callable[..., dict[str, str]]:
    """Worker environment for a private Redis, with FAST_TIMING and any overrides."""

    def build(redis: RedisServer, **extra: str) -> dict[str, str]:
        return service_env(redis_url=redis.url, smtp_port=smtp.port, extra={**FAST_TIMING, **extra})

    return build

"""Fixtures for the fault-injection suite: the broker under test, private Redis servers and
worker environments.

``broker_url`` runs a test once per broker: ``[redis]`` (None: the Redis of REDIS_URL is the
broker too) and ``[rabbitmq]`` (a private vhost on the local RabbitMQ, given as BROKER_URL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.rabbitmq import private_vhost
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

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

#: On top of FAST_TIMING, for tests that count every duplicate and are not about send
#: timeouts: on a loaded 2-core runner a send can pass a 2 s SEND_TIMEOUT after the SMTP server
#: took its DATA, and its retry then sends it again (the documented late-accept case).
NO_LATE_ACCEPT = {"SEND_TIMEOUT": "10", "TASK_TIME_LIMIT": "15", "BROKER_VISIBILITY_TIMEOUT": "20"}


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the Redis broker; else the URL of a private RabbitMQ vhost (BROKER_URL)."""
    with private_vhost() if request.param == "rabbitmq" else nullcontext() as url:
        yield url


def broker_env(broker_url: str | None) -> dict[str, str]:
    """The BROKER_URL entry of a worker or API environment, when the broker is RabbitMQ."""
    return {"BROKER_URL": broker_url} if broker_url else {}


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
    """Worker environment for a private Redis, with FAST_TIMING, BROKER_URL when a RabbitMQ
    ``broker_url`` is given, and any overrides."""

    def build(redis: RedisServer, broker_url: str | None = None, **extra: str) -> dict[str, str]:
        return service_env(
            redis_url=redis.url,
            smtp_port=smtp.port,
            extra={**FAST_TIMING, **broker_env(broker_url), **extra},
        )

    return build


@dataclass(frozen=True)
class Service:
    """A running worker with the session's timing, its Redis and its broker."""

    redis_url: str
    broker_url: str | None
    worker: WorkerProcess


@pytest.fixture
def service(
    request: pytest.FixtureRequest,
    broker_url: str | None,
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    smtp: RecordingSMTPServer,
) -> Service:
    """On Redis the session's worker; on RabbitMQ a worker with the same settings on a
    private Redis and vhost (the session worker consumes Redis only)."""
    if broker_url is None:
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        worker: WorkerProcess = request.getfixturevalue("worker")
        return Service(redis_server.url, None, worker)
    redis = make_redis()
    env = service_env(redis_url=redis.url, smtp_port=smtp.port, extra=broker_env(broker_url))
    return Service(redis.url, broker_url, make_worker(env, concurrency=2))

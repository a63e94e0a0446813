"""Shared fixtures: a real redis-server, a real SMTP server and a real Celery worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.support.records import read_record, wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO, WorkerProcess, service_env

REPO_ROOT = REPO
# Older tests import these from here; their home is tests.support.records.
__all__ = ["REPO_ROOT", "read_record", "wait_for_status"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for one test: no other test's worker consumes its queues, and
    the test may stop or kill it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[RecordingSMTPServer]:
    server = RecordingSMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server: RecordingSMTPServer) -> Iterator[RecordingSMTPServer]:
    """The session's SMTP server, emptied and with no failure rules, for one test."""
    smtp_server.reset()
    yield smtp_server
    smtp_server.reset()


@pytest.fixture(scope="session")
def worker_env(redis_server: RedisServer, smtp_server: RecordingSMTPServer) -> dict[str, str]:
    return service_env(redis_url=redis_server.url, smtp_port=smtp_server.port)


@pytest.fixture(scope="session")
def worker(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One real worker for the session (two processes)."""
    process = WorkerProcess(
        env=worker_env, log_path=tmp_path_factory.mktemp("worker") / "worker.log", concurrency=2
    )
    process.start()
    yield process
    process.terminate()


@pytest.fixture
def make_worker(
    tmp_path: Path,
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory for extra workers a test can kill; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def factory(env: dict[str, str], **options: Any) -> WorkerProcess:
        process = WorkerProcess(env=env, log_path=tmp_path / f"worker{len(started)}.log", **options)
        process.start()
        started.append(process)
        return process

    yield factory
    for process in started:
        process.kill()


@pytest.fixture(scope="session")
def celery_client(redis_server: RedisServer) -> Iterator[Celery]:
    """A publisher's Celery app: only the broker URL, no notifier code (like the seed's client)."""
    client = Celery("tests_client", broker=redis_server.url, backend=redis_server.url)
    client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    yield client
    client.close()

"""Warm shutdown (SIGTERM) with a backlog: sends in flight finish, SMTP gets a QUIT; on the Redis
broker and on RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.reliability.conftest import NO_LATE_ACCEPT
from tests.reliability.faults import (
    deliveries,
    duplicates,
    publish_burst,
    publisher,
    statuses,
    wait_terminal,
    wait_until,
)
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


def test_sigterm_with_backlog_of_500_then_new_worker(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    env = private_env(redis, broker_url, **NO_LATE_ACCEPT)
    client = publisher(redis.url, broker_url=broker_url)
    ids = publish_burst(client, 500, tag="sigterm")
    client.close()

    first = make_worker(env, concurrency=2)
    wait_until(lambda: len(smtp.messages) >= 50, timeout=60, what="the backlog draining")
    quits_before = smtp.quits
    first.terminate(timeout=30)
    assert first.process is not None and first.process.returncode == 0
    sent_by_first = len(deliveries(smtp, ids))
    current = statuses(redis.url, ids)
    # Nothing was left half-done: every notification is sent or still untouched.
    assert set(current.values()) <= {"sent", None}, set(current.values())
    assert sent_by_first < len(ids), "the backlog outlived the first worker"
    # Each pool process closed its SMTP connection with a QUIT (worker_process_shutdown).
    assert smtp.quits - quits_before >= 2
    log = first.log_text()
    for trouble in (
        "Traceback",
        "SMTPServerDisconnected",
        "WorkerLostError",
        "error while closing",
    ):
        assert trouble not in log, trouble

    make_worker(env, concurrency=2)
    records = wait_terminal(redis.url, ids, timeout=90)
    counts = deliveries(smtp, ids)
    assert {r.status for r in records.values()} == {"sent"}
    assert set(counts) == set(ids)
    assert duplicates(counts) == 0  # a warm shutdown is not a crash: nothing twice
    print(f"\nsigterm: first worker sent {sent_by_first} of 500 before stopping, 0 duplicates")

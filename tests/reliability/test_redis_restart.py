"""Redis (append-only file on) restarts under queued, unacked and scheduled notifications.

On the Redis broker Redis holds the task messages too; on RabbitMQ it holds the records, the
schedule and the results only, while the messages stay on the broker.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.reliability.faults import (
    deliveries,
    duplicates,
    plain_request,
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


def test_redis_restart_with_queued_unacked_and_scheduled(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis(appendonly=True)
    # A task may wait up to TASK_TIME_LIMIT - SEND_TIMEOUT - 1 s for Redis to record an outcome.
    env = private_env(redis, broker_url, TASK_TIME_LIMIT="10", BROKER_VISIBILITY_TIMEOUT="15")
    worker = make_worker(env, concurrency=2)
    client = publisher(redis.url, broker_url=broker_url)

    send_at = datetime.now(UTC) + timedelta(seconds=6)
    scheduled = [f"restart-sched-{uuid.uuid4().hex[:8]}-{i}" for i in range(10)]
    for notification_id in scheduled:
        client.send_task(
            "notifier.send",
            kwargs=plain_request(f"{notification_id}@example.com", send_at=send_at.isoformat()),
            task_id=notification_id,
        )
    wait_until(
        lambda: set(statuses(redis.url, scheduled).values()) == {"scheduled"},
        timeout=20,
        what="scheduled records",
    )
    burst = publish_burst(client, 150, tag="restart")
    client.close()
    wait_until(lambda: len(deliveries(smtp, burst)) >= 30, timeout=30, what="the burst under way")
    redis.stop()  # SIGTERM: the AOF is complete (appendfsync always)
    stopped_at = time.monotonic()
    time.sleep(1.0)
    redis.start()  # same port and directory: the AOF is loaded again

    ids = [*scheduled, *burst]
    # Known limit of kombu's Redis transport: the consumer takes a message with BRPOP, so if
    # Redis stops between executing that pop (persisted in the AOF) and the reply reaching
    # the worker, the message is gone. The consumer has one BRPOP in flight, so at most one
    # `notifier.send` message -- which had no record yet -- can vanish at the stop. On
    # RabbitMQ the messages never were in Redis: none may vanish.
    with contextlib.suppress(AssertionError):
        wait_terminal(redis.url, ids, timeout=45)
    current = statuses(redis.url, ids)
    vanished = [i for i, status in current.items() if status is None]
    assert len(vanished) <= (0 if broker_url else 1), vanished
    assert all(i in burst for i in vanished)  # scheduled ones had records: never lost
    ids = [i for i in ids if i not in vanished]
    records = wait_terminal(redis.url, ids, timeout=5)
    drained = time.monotonic() - stopped_at
    counts = deliveries(smtp, ids)
    assert {r.status for r in records.values()} == {"sent"}
    assert set(counts) == set(ids), "everything with a record was sent"
    # No process crashed, so nothing may go out twice: outcomes are recorded once Redis is
    # back, and a message whose ack was lost comes back to find its record `sent`.
    assert duplicates(counts) == 0
    for notification_id in scheduled:
        assert (records[notification_id].sent_at or 0) >= send_at.timestamp()
    # The worker reconnected by itself.
    assert worker.process is not None and worker.process.poll() is None
    log = worker.log_text()
    print(
        f"\nredis restart: {len(ids)} sent once, {len(vanished)} lost in BRPOP, "
        f"drained {drained:.1f}s after the stop"
    )
    if broker_url is None:
        assert "Connection to broker lost" in log
        assert log.count("Connected to") >= 2
    else:  # RabbitMQ stayed up: the worker kept its broker connection through the restart.
        assert "Connection to broker lost" not in log
    assert "Unrecoverable error" not in log

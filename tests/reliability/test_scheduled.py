"""Scheduled notifications that fall due while no worker runs, and a cancelled one; on the Redis
broker and on RabbitMQ (where the dispatcher publishes due sends through the sink)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from notifier.intake import cancel_notification
from notifier.storage.store import NotificationStore, connect_redis
from tests.reliability.faults import (
    accept_like_the_api,
    deliveries,
    plain_request,
    publisher,
    sentinel_then_drained,
    statuses,
    wait_terminal,
    wait_until,
)
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


async def _cancel(redis_url: str, ids: list[str]) -> None:
    redis = connect_redis(redis_url)
    try:
        store = NotificationStore(redis)
        for notification_id in ids:
            await cancel_notification(store, notification_id)
    finally:
        await redis.aclose()


def test_due_while_no_worker_runs_sent_once_cancelled_never(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    env = private_env(redis, broker_url)
    send_at = datetime.now(UTC) + timedelta(seconds=8)
    tag = uuid.uuid4().hex[:8]

    # Half arrive as notifier.send messages (the worker parks them on the schedule) ...
    first = make_worker(env, concurrency=1)
    client = publisher(redis.url, broker_url=broker_url)
    via_task = [f"sched-task-{tag}-{i}" for i in range(5)]
    for notification_id in via_task:
        client.send_task(
            "notifier.send",
            kwargs=plain_request(f"{notification_id}@example.com", send_at=send_at.isoformat()),
            task_id=notification_id,
        )
    client.close()
    # ... half the way the API stores them.
    via_api = [f"sched-api-{tag}-{i}" for i in range(5)]
    answers = asyncio.run(
        accept_like_the_api(redis.url, via_api, broker_url=broker_url, send_at=send_at.isoformat())
    )
    assert set(answers) == {"scheduled"}
    ids = via_task + via_api
    wait_until(
        lambda: set(statuses(redis.url, ids).values()) == {"scheduled"},
        timeout=20,
        what="all notifications scheduled",
    )
    first.terminate()
    cancelled = [via_task[0], via_api[0]]
    asyncio.run(_cancel(redis.url, cancelled))

    # Due now, and no worker runs: nothing may have gone out early.
    while datetime.now(UTC) < send_at + timedelta(seconds=1):
        time.sleep(0.2)
    assert not deliveries(smtp, ids)
    assert set(statuses(redis.url, ids).values()) == {"scheduled", "cancelled"}

    second = make_worker(env, concurrency=2)
    records = wait_terminal(redis.url, ids, timeout=30)
    # A second dispatch of any of them would have been sent before the sentinel.
    sentinel_then_drained(redis.url, smtp, broker_url=broker_url, worker=second)
    counts = deliveries(smtp, ids)
    for notification_id in ids:
        if notification_id in cancelled:
            assert records[notification_id].status == "cancelled"
            assert counts[notification_id] == 0
        else:
            assert records[notification_id].status == "sent", notification_id
            assert counts[notification_id] == 1, notification_id

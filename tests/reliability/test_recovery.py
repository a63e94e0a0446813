"""Recovery sweep: a notification whose task message was lost is still sent, exactly once, on
the Redis broker and on RabbitMQ (where the sweep publishes through the sink)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from notifier.storage.store import NotificationStore, connect_redis
from tests.reliability.faults import (
    accept_like_the_api,
    deliveries,
    drop_queued_messages,
    sentinel_then_drained,
    statuses,
    wait_terminal,
)
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


async def _claim_and_abandon(redis_url: str, notification_id: str) -> None:
    """What a delivery killed by a hard time limit leaves: a claim nobody will finish."""
    redis = connect_redis(redis_url)
    try:
        claim = await NotificationStore(redis).claim(notification_id, lease_seconds=0.5)
        assert claim.outcome == "claimed"
    finally:
        await redis.aclose()


def test_lost_messages_are_requeued_and_sent_once(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    tag = uuid.uuid4().hex[:8]
    lost_queued = [f"lost-queued-{tag}-{i}" for i in range(3)]
    abandoned = f"abandoned-{tag}"
    accepted = accept_like_the_api(redis.url, [*lost_queued, abandoned], broker_url=broker_url)
    assert set(asyncio.run(accepted)) == {"queued"}
    # The fault: every task message vanishes (a fetch answered into a Redis stop, a queue
    # purged), and one notification is left claimed by a delivery that died without
    # acknowledging anything.
    dropped = drop_queued_messages(redis.url, broker_url=broker_url)
    assert dropped == (4 if broker_url else 1)
    asyncio.run(_claim_and_abandon(redis.url, abandoned))
    ids = [*lost_queued, abandoned]
    assert set(statuses(redis.url, ids).values()) == {"queued", "sending"}

    worker = make_worker(private_env(redis, broker_url, RECOVERY_AFTER="1"), concurrency=2)
    records = wait_terminal(redis.url, ids, timeout=40)
    assert {r.status for r in records.values()} == {"sent"}
    # A spare message (a second requeue by the sweep) would have run before the sentinel.
    sentinel_then_drained(redis.url, smtp, broker_url=broker_url, worker=worker)
    counts = deliveries(smtp, ids)
    assert counts == {notification_id: 1 for notification_id in ids}

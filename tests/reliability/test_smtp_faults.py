"""The SMTP server goes away, defers, refuses, never accepts, or is too slow: on the Redis
broker and on RabbitMQ (where a retry is published by the dispatcher through the sink)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from celery import Celery

from notifier.storage.keys import Keys
from notifier.storage.store import connect_redis
from tests.reliability.conftest import Service
from tests.reliability.faults import (
    deliveries,
    duplicates,
    plain_request,
    publish_burst,
    publisher,
    wait_terminal,
    wait_until,
)
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


def _publish(client: Celery, addresses: list[str]) -> dict[str, str]:
    ids = {}
    for address in addresses:
        task_id = f"{address.partition('@')[0]}-{uuid.uuid4().hex[:8]}"
        client.send_task("notifier.send", kwargs=plain_request(address), task_id=task_id)
        ids[address] = task_id
    return ids


async def _failed_index(redis_url: str) -> set[str]:
    redis = connect_redis(redis_url)
    try:
        return {str(member) for member in await redis.zrange(Keys().status("failed"), 0, -1)}
    finally:
        await redis.aclose()


def test_smtp_server_down_for_20s_during_a_burst(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    # Backoff capped at 2 s: about 20 attempts while the server is away; 60 allowed.
    env = private_env(redis, broker_url, RETRY_MAX_ATTEMPTS="60", RETRY_BACKOFF_MAX="2")
    make_worker(env, concurrency=2)
    client = publisher(redis.url, broker_url=broker_url)
    early = publish_burst(client, 20, tag="smtpdown")
    wait_until(lambda: len(smtp.messages) >= 10, timeout=30, what="the first sends")
    smtp.stop()
    down_at = time.monotonic()
    # The rest of the burst arrives while the server is away (published before the stop, a
    # fast worker could send all of it first and the outage would test nothing).
    during = publish_burst(client, 40, tag="smtpdown-late")
    client.close()
    ids = [*early, *during]
    time.sleep(20)
    sent_while_down = len(smtp.messages)
    smtp.start()  # same port
    records = wait_terminal(redis.url, ids, timeout=60)
    back_after = time.monotonic() - down_at - 20

    counts = deliveries(smtp, ids)
    assert {r.status for r in records.values()} == {"sent"}
    assert set(counts) == set(ids), "none lost"
    assert duplicates(counts) == 0  # no process crashed: nothing may go out twice
    retried = [r for r in records.values() if r.attempt_count > 1]
    assert all(records[i].attempt_count > 1 for i in during), "sends during the outage retried"
    most = max(r.attempt_count for r in records.values())
    print(
        f"\nsmtp down 20 s: {sent_while_down} of {len(ids)} sent before the outage, "
        f"{len(retried)} retried (up to {most} attempts), all sent {back_after:.1f}s after return"
    )


def test_451_retried_until_sent_550_failed_at_once(
    service: Service, smtp: RecordingSMTPServer
) -> None:
    tag = uuid.uuid4().hex[:6]
    soft = [f"soft{i}-{tag}@example.com" for i in range(8)]
    hard = [f"hard{i}-{tag}@example.com" for i in range(8)]
    fine = [f"fine{i}-{tag}@example.com" for i in range(8)]
    for address in soft:
        smtp.fail(451, stage="rcpt", recipients=[address], times=2)
    smtp.fail(550, stage="rcpt", recipients=hard)
    client = publisher(service.redis_url, broker_url=service.broker_url)
    ids = _publish(client, [*soft, *hard, *fine])
    client.close()

    records = wait_terminal(service.redis_url, list(ids.values()), timeout=60)
    counts = deliveries(smtp, ids.values())
    failed_index = asyncio.run(_failed_index(service.redis_url))
    for address in soft:
        record = records[ids[address]]
        assert record.status == "sent", address
        assert record.attempt_count == 3  # two 451s, then accepted
        assert [a.code for a in record.attempts] == [451, 451, 250]
        assert counts[ids[address]] == 1
    for address in hard:
        record = records[ids[address]]
        assert record.status == "failed", address
        assert record.attempt_count == 1
        assert record.error_code == 550
        assert record.reason and "550" in record.reason
        assert ids[address] in failed_index
        assert counts[ids[address]] == 0
    for address in fine:
        assert records[ids[address]].status == "sent"
        assert counts[ids[address]] == 1


def test_poison_message_stops_after_max_attempts(
    service: Service, smtp: RecordingSMTPServer
) -> None:
    address = f"poison-{uuid.uuid4().hex[:6]}@example.com"
    smtp.fail(451, stage="rcpt", recipients=[address])  # every time
    client = publisher(service.redis_url, broker_url=service.broker_url)
    ids = _publish(client, [address])
    client.close()
    record = wait_terminal(service.redis_url, [ids[address]], timeout=60)[ids[address]]
    assert record.status == "failed"
    assert record.attempt_count == 5  # RETRY_MAX_ATTEMPTS in the session worker's env
    assert [a.outcome for a in record.attempts] == ["transient"] * 5
    assert record.error_code == 451
    assert record.reason and "gave up after 5 attempts" in record.reason
    assert ids[address] in asyncio.run(_failed_index(service.redis_url))
    assert len([r for r in smtp.rejected if r[0] == address]) == 5
    assert not deliveries(smtp, ids.values())


def test_send_timeout_cancels_and_retries_without_late_duplicate(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    make_worker(private_env(redis, broker_url), concurrency=1)  # SEND_TIMEOUT=2
    address = f"slow-{uuid.uuid4().hex[:6]}@example.com"
    # The first RCPT is answered after 4 s (then normally); the retry finds a fast server.
    smtp.fail(250, stage="rcpt", recipients=[address], times=1, delay=4)
    client = publisher(redis.url, broker_url=broker_url)
    ids = _publish(client, [address])
    client.close()
    notification_id = ids[address]
    record = wait_terminal(redis.url, [notification_id], timeout=30)[notification_id]
    assert record.status == "sent"
    assert record.attempts[0].outcome == "transient"
    assert "did not finish within 2s" in record.attempts[0].message
    assert record.attempts[-1].outcome == "sent"
    # The timed-out exchange was cancelled and its connection dropped while the slow reply was
    # still pending, so that exchange can never reach DATA: one message, now and later.
    wait_until(
        lambda: smtp.hangups_in_delay == 1, timeout=10, what="the timed-out connection dropped"
    )
    assert deliveries(smtp, [notification_id])[notification_id] == 1
    assert smtp.connections >= 2

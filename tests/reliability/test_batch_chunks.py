"""The batch fan-out: one ``notifier.deliver_batch`` message per chunk of stored notifications.

Each notification of a chunk is still claimed, sent and recorded on its own, so a chunk that
names an already-sent id skips it, and a pool process killed mid-chunk loses nothing (the
chunk's message is redelivered and the claim skips what was sent). Each test runs on the Redis
broker and on RabbitMQ, where chunks and a chunk's leftovers are published through the sink.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import Notification, parse_request, validate_notification
from notifier.intake import accept_batch, deliver_batch_message, record_fields
from notifier.settings import load_settings
from notifier.storage.store import AcceptItem
from tests.reliability.conftest import Service
from tests.reliability.faults import (
    deliveries,
    duplicates,
    open_store,
    plain_request,
    wait_terminal,
    wait_until,
)
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
_RENDERER = TemplateRenderer(REPO / "templates", default_locale="en")
_SETTINGS = load_settings()


def notifications(tag: str, count: int) -> list[Notification]:
    return [
        validate_notification(
            parse_request(plain_request(f"{tag}-{index}@example.com")),
            settings=_SETTINGS,
            renderer=_RENDERER,
        )
        for index in range(count)
    ]


async def _queue_batch(
    redis_url: str, broker_url: str | None, items: Sequence[Notification], chunk_size: int
) -> list[str]:
    async with open_store(redis_url, broker_url=broker_url) as store:
        results = await accept_batch(store, items, source="api", chunk_size=chunk_size)
        assert all(r.created for r in results)
        return [r.id for r in results]


def queue_batch(
    redis_url: str,
    items: Sequence[Notification],
    *,
    chunk_size: int,
    broker_url: str | None = None,
) -> list[str]:
    """What the API's batch route does: records and chunk messages, queued or published."""
    return asyncio.run(_queue_batch(redis_url, broker_url, items, chunk_size))


async def _store_unqueued(redis_url: str, item: Notification, notification_id: str) -> None:
    async with open_store(redis_url) as store:
        [result] = await store.accept_many(
            [AcceptItem(notification_id, record_fields(item, source="api"))]
        )
        assert result.created


async def _enqueue(redis_url: str, broker_url: str | None, message: bytes) -> None:
    async with open_store(redis_url, broker_url=broker_url) as store:
        await store.enqueue(message)


def test_batch_chunks_deliver_every_notification(
    service: Service, smtp: RecordingSMTPServer
) -> None:
    # The session worker's TASK_TIME_LIMIT=30 / SEND_TIMEOUT=10 leave a chunk start budget of 0,
    # so each chunk task sends its first notification and queues the rest as a new chunk: this
    # exercises the requeue path; the SIGKILL test below runs whole chunks.
    ids = queue_batch(
        service.redis_url,
        notifications("chunked", 120),
        chunk_size=50,
        broker_url=service.broker_url,
    )

    records = wait_terminal(service.redis_url, ids, timeout=60)
    assert {r.status for r in records.values()} == {"sent"}
    counts = deliveries(smtp, ids)
    assert set(counts) == set(ids)
    assert duplicates(counts) == 0
    assert all(r.attempt_count == 1 for r in records.values())


def test_chunk_naming_a_sent_notification_skips_it(
    service: Service, smtp: RecordingSMTPServer
) -> None:
    redis_url, broker_url = service.redis_url, service.broker_url
    sent_ids = queue_batch(
        redis_url, notifications("resent", 3), chunk_size=50, broker_url=broker_url
    )
    wait_terminal(redis_url, sent_ids, timeout=30)
    assert set(deliveries(smtp, sent_ids)) == set(sent_ids)

    # A record with no message of its own, named only at the end of a chunk that repeats
    # the sent ids: once it is sent, the chunk has been through the others.
    [fresh] = notifications("fresh", 1)
    fresh_id = f"fresh-{time.monotonic_ns()}"
    asyncio.run(_store_unqueued(redis_url, fresh, fresh_id))
    asyncio.run(_enqueue(redis_url, broker_url, deliver_batch_message([*sent_ids, fresh_id])))

    records = wait_terminal(redis_url, [fresh_id], timeout=30)
    assert records[fresh_id].status == "sent"
    counts = deliveries(smtp, [*sent_ids, fresh_id])
    assert counts == {i: 1 for i in [*sent_ids, fresh_id]}, "a sent notification was sent again"
    after = wait_terminal(redis_url, sent_ids, timeout=5)
    assert all(r.attempt_count == 1 for r in after.values())


@pytest.mark.slow
def test_pool_process_killed_mid_chunk_loses_nothing(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    # A time limit long enough that a chunk of 50 runs whole (chunk_start_budget > 0).
    env = private_env(
        redis,
        broker_url,
        TASK_TIME_LIMIT="60",
        BROKER_VISIBILITY_TIMEOUT="70",
        SMTP_CONNECTIONS_PER_PROCESS="2",
    )
    worker = make_worker(env, concurrency=2)
    # A slightly slow server, so each kill lands inside a chunk.
    smtp.fail(250, stage="data", delay=0.01)
    ids = queue_batch(
        redis.url, notifications("chunkkill", 200), chunk_size=50, broker_url=broker_url
    )

    kills = 0
    for threshold in (30, 110):
        wait_until(lambda t=threshold: len(smtp.messages) >= t, timeout=60, what="sending")
        children = worker.child_pids()
        assert children, "the worker has no pool processes"
        os.kill(children[0], signal.SIGKILL)
        kills += 1
        time.sleep(0.5)

    # The killed chunk's message is redelivered (reject_on_worker_lost); the ids it sent are
    # skipped by the claim, those it was sending wait for their lease (SEND_TIMEOUT + 30 s).
    records = wait_terminal(redis.url, ids, timeout=100)
    assert {r.status for r in records.values()} == {"sent"}
    counts = deliveries(smtp, ids)
    assert set(counts) == set(ids), "every notification reached the SMTP server"
    # A duplicate needs a kill between the server's 250 and the `sent` record; each kill
    # interrupts at most SMTP_CONNECTIONS_PER_PROCESS sends in flight.
    assert duplicates(counts) <= kills * 2

"""Helpers for the fault-injection suite: publish bursts, wait for terminal statuses, count."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis
from celery import Celery
from kombu import Connection
from kombu.transport.redis import Channel as RedisChannel

from notifier.compose.requests import parse_request, validate_notification
from notifier.intake import accept_notification
from notifier.messages import DEFAULT_QUEUE, SEND_TASK
from notifier.settings import load_settings
from notifier.startup import load_renderer
from notifier.storage.keys import Keys
from notifier.storage.sink import AmqpSink
from notifier.storage.store import NotificationRecord, NotificationStore, connect_redis
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO, WorkerProcess

TERMINAL = frozenset({"sent", "failed", "cancelled"})
#: The Message-ID domain: the sender address of service_env's MAIL_FROM.
MESSAGE_ID_DOMAIN = "example.com"


def publisher(redis_url: str, *, broker_url: str | None = None) -> Celery:
    """A bare Celery client (broker URL only), as another service would have.

    With ``broker_url`` (RabbitMQ) it declares the queue as the worker does: a quorum queue.
    """
    client = Celery("reliability_client", broker=broker_url or redis_url, backend=redis_url)
    client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    if broker_url:
        client.conf.task_default_queue_type = "quorum"
    return client


def plain_request(to: str, *, body: str = "hello", **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "to": [to],
        "template": "plain",
        "context": {"subject": f"test {to}", "body": body},
    }
    request.update(extra)
    return request


def publish_burst(client: Celery, count: int, *, tag: str, **extra: Any) -> list[str]:
    """Publish ``count`` notifier.send messages; returns their ids (the task ids)."""
    ids = []
    for index in range(count):
        task_id = f"{tag}-{index:04d}-{uuid.uuid4().hex[:8]}"
        client.send_task(
            SEND_TASK,
            kwargs=plain_request(f"{tag}-{index}@example.com", **extra),
            task_id=task_id,
        )
        ids.append(task_id)
    return ids


async def _read_records(redis_url: str, ids: Sequence[str]) -> dict[str, NotificationRecord | None]:
    redis = connect_redis(redis_url)
    try:
        store = NotificationStore(redis)
        return {i: await store.find(i) for i in ids}
    finally:
        await redis.aclose()


def read_records(redis_url: str, ids: Sequence[str]) -> dict[str, NotificationRecord | None]:
    return asyncio.run(_read_records(redis_url, ids))


async def _statuses(redis_url: str, ids: Sequence[str]) -> list[str | None]:
    redis = connect_redis(redis_url)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for notification_id in ids:
                pipe.hget(Keys().record(notification_id), "status")
            result: list[str | None] = await pipe.execute()
        return result
    finally:
        await redis.aclose()


def statuses(redis_url: str, ids: Sequence[str]) -> dict[str, str | None]:
    return dict(zip(ids, asyncio.run(_statuses(redis_url, ids)), strict=True))


def wait_terminal(
    redis_url: str, ids: Sequence[str], *, timeout: float, poll: float = 0.25
) -> dict[str, NotificationRecord]:
    """Wait until every record is sent/failed/cancelled; fail listing the stragglers."""
    deadline = time.monotonic() + timeout
    pending: dict[str, str | None] = {}
    while True:
        try:
            current = statuses(redis_url, ids)
        except Exception as exc:  # Redis may be restarting in the test that restarts it.
            current = {i: f"unreadable: {exc}" for i in ids}
        pending = {i: s for i, s in current.items() if s not in TERMINAL}
        if not pending:
            break
        if time.monotonic() > deadline:
            summary = Counter(pending.values())
            raise AssertionError(
                f"{len(pending)} of {len(ids)} notifications not terminal after {timeout}s: "
                f"{dict(summary)}; e.g. {list(pending)[:3]}"
            )
        time.sleep(poll)
    records = read_records(redis_url, ids)
    assert all(r is not None for r in records.values())
    return {i: r for i, r in records.items() if r is not None}


def notification_id_of(message_id: str) -> str:
    return message_id.strip("<>").rpartition("@")[0]


def deliveries(smtp: RecordingSMTPServer, ids: Iterable[str]) -> Counter[str]:
    """How many times the SMTP server received each of ``ids`` (by Message-ID)."""
    wanted = set(ids)
    counts: Counter[str] = Counter()
    for message in smtp.messages:
        notification_id = notification_id_of(message.message_id)
        if notification_id in wanted:
            counts[notification_id] += 1
    return counts


def duplicates(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def wait_until(predicate: Any, *, timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


@asynccontextmanager
async def open_store(
    redis_url: str, *, broker_url: str | None = None
) -> AsyncIterator[NotificationStore]:
    """The store as the API has it: on RabbitMQ (``broker_url``) it publishes through an
    AmqpSink after writing the record; on Redis its scripts push onto the queue list."""
    client = connect_redis(redis_url)
    sink = AmqpSink(broker_url) if broker_url else None
    try:
        yield NotificationStore(client, sink=sink)
    finally:
        if sink is not None:
            sink.close()
        await client.aclose()


async def accept_like_the_api(
    redis_url: str, ids: Sequence[str], *, broker_url: str | None = None, **extra: Any
) -> list[str]:
    """What the API does: validate, then store each record and queue (or schedule) it
    atomically, or on RabbitMQ publish it once stored. Returns the statuses the store answered."""
    settings = load_settings(redis_url=redis_url, templates_dir=REPO / "templates")
    renderer = load_renderer(settings)
    async with open_store(redis_url, broker_url=broker_url) as store:
        answers = []
        for notification_id in ids:
            request = plain_request(f"{notification_id}@example.com", **extra)
            notification = validate_notification(
                parse_request(request), settings=settings, renderer=renderer
            )
            result = await accept_notification(
                store, notification, source="api", notification_id=notification_id
            )
            answers.append(result.status)
        return answers


def amqp_queue(broker_url: str, queue: str = DEFAULT_QUEUE) -> tuple[int, int]:
    """RabbitMQ's count of ``queue``'s ready messages and of its consumers, read with a passive
    queue.declare: exact at once (``rabbitmqctl list_queues`` lags for quorum queues)."""
    with Connection(broker_url, connect_timeout=5) as connection:
        reply = connection.default_channel.queue_declare(queue, passive=True)
    return int(reply.message_count), int(reply.consumer_count)


def drop_queued_messages(redis_url: str, *, broker_url: str | None = None) -> int:
    """The fault of a lost task message: every message waiting in the queue vanishes.

    Returns how many were dropped (the Redis broker's list counts as one when it existed).
    """
    if broker_url:
        with Connection(broker_url, connect_timeout=5) as connection:
            return int(connection.default_channel.queue_purge(DEFAULT_QUEUE) or 0)
    with redis.Redis.from_url(redis_url) as client:
        return int(client.delete(Keys().queue))


def sentinel_then_drained(
    redis_url: str,
    smtp: RecordingSMTPServer,
    *,
    broker_url: str | None = None,
    worker: WorkerProcess | None = None,
    timeout: float = 30.0,
) -> None:
    """Return once every task message queued so far has run to its end (no sleep).

    A sentinel notification is published after them and waited for: the queue is a FIFO, so
    by then the worker has taken every earlier message. With acks_late a message leaves
    kombu's unacked hash only when its task has finished, so once the queue and that hash are
    both empty, nothing queued before the sentinel can still send.

    RabbitMQ shows no exact count of a quorum queue's unacknowledged messages, so there
    ``worker`` is stopped warmly instead: its tasks in flight finish, and whatever it held but
    had not run goes back to the queue, which must then be empty.
    """
    address = f"sentinel-{uuid.uuid4().hex[:8]}@example.com"
    client = publisher(redis_url, broker_url=broker_url)
    try:
        client.send_task(SEND_TASK, kwargs=plain_request(address))
    finally:
        client.close()
    smtp.wait_for(1, to=address, timeout=timeout)
    if broker_url:
        assert worker is not None, "on RabbitMQ the drain is checked by stopping the worker"
        worker.terminate(timeout=timeout)
        wait_until(lambda: amqp_queue(broker_url)[1] == 0, timeout=timeout, what="no consumer left")
        ready, _ = amqp_queue(broker_url)
        assert ready == 0, f"{ready} message(s) still queued after the sentinel"
        return
    with redis.Redis.from_url(redis_url) as broker:
        wait_until(
            lambda: broker.llen(DEFAULT_QUEUE) == 0 and broker.hlen(RedisChannel.unacked_key) == 0,
            timeout=timeout,
            what="the queue and the unacked messages to drain",
        )

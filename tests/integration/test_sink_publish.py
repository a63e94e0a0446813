"""Publishing after the record is written, with RabbitMQ as the broker, against a real
redis-server and RabbitMQ: a due message leaves the schedule only once RabbitMQ has confirmed
it, so a dispatcher killed between the two (or a publish that fails) loses nothing; and an id
accepted again while its record is still queued is published again."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import cast

import pytest
from amqp.exceptions import NotFound
from kombu import Connection

from notifier.intake import deliver_message
from notifier.storage.keys import PUBLISHING
from notifier.storage.scripted import REPUBLISH_AFTER, RETRY_PUBLISH_AFTER
from notifier.storage.sink import AmqpSink
from notifier.storage.store import NotificationStore, connect_redis
from tests.support.rabbitmq import private_vhost
from tests.support.redis_server import RedisServer

NOW = 1_700_000_000.0
FIELDS = {"source": "api", "to": '["a@example.org"]', "template": "welcome"}


@pytest.fixture
def amqp_url() -> Iterator[str]:
    with private_vhost() as url:
        yield url


class DiesAfterPublishing(AmqpSink):
    """Publishes for real, then stops its caller the way a SIGKILL would: before the confirm
    reaches Redis (CancelledError is not an Exception, so nothing handles it)."""

    async def publish(self, messages: Sequence[bytes | str]) -> None:
        await super().publish(messages)
        raise asyncio.CancelledError


class DiesBeforePublishing(AmqpSink):
    async def publish(self, messages: Sequence[bytes | str]) -> None:
        raise asyncio.CancelledError


class Refused(AmqpSink):
    async def publish(self, messages: Sequence[bytes | str]) -> None:
        raise ConnectionRefusedError(111, "Connection refused")


def _queued(url: str) -> list[str]:
    """Task ids waiting in RabbitMQ's ``celery`` queue, taken off it."""
    ids = []
    with Connection(url) as connection:
        channel = connection.default_channel
        try:
            while (message := channel.basic_get("celery")) is not None:
                ids.append(message.headers["id"])
                channel.basic_ack(message.delivery_tag)
        except NotFound:  # nothing was ever published: the queue is declared by the first one
            return []
    return ids


def _run(redis: RedisServer, prefix: str, sink: AmqpSink, *steps: float) -> list[int | str]:
    """``dispatch_due`` at each of ``steps`` (a clock), with ``sink``; each result, or
    "killed". The first call under a prefix schedules notification n1, due at NOW - 1."""

    async def main() -> list[int | str]:
        client = connect_redis(redis.url)
        store = NotificationStore(client, prefix=prefix, sink=sink)
        results: list[int | str] = []
        try:
            if not await client.exists(store.keys.record("n1")):
                await store.accept(
                    notification_id="n1",
                    fields=FIELDS,
                    message=deliver_message("n1"),
                    due=NOW - 1,
                    now=NOW - 10,
                )
            for now in steps:
                try:
                    results.append(await store.dispatch_due(now=now))
                except asyncio.CancelledError:
                    results.append("killed")
            return results
        finally:
            await client.aclose()
            sink.close()

    return asyncio.run(main())


def _schedule(redis: RedisServer, prefix: str) -> dict[str, float]:
    client = redis.client()
    try:
        pairs = client.zrange(f"{prefix}:scheduled", 0, -1, withscores=True)
        return dict(cast(list[tuple[str, float]], pairs))
    finally:
        client.close()


def test_a_confirmed_publish_leaves_the_schedule(redis_server: RedisServer, amqp_url: str) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    assert _run(redis_server, prefix, AmqpSink(amqp_url), NOW, NOW + 1) == [1, 0]
    assert _schedule(redis_server, prefix) == {}
    assert len(_queued(amqp_url)) == 1


def test_a_dispatcher_killed_before_the_confirm_loses_nothing(
    redis_server: RedisServer, amqp_url: str
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    assert _run(redis_server, prefix, DiesAfterPublishing(amqp_url), NOW) == ["killed"]
    # Published, and still on the schedule to be published again.
    assert _schedule(redis_server, prefix) == {f"{PUBLISHING}n1": NOW + REPUBLISH_AFTER}
    assert len(_queued(amqp_url)) == 1

    # Other dispatchers leave it alone until then, and publish it again after.
    later = NOW + REPUBLISH_AFTER
    assert _run(redis_server, prefix, AmqpSink(amqp_url), NOW + 1, later, later + 1) == [0, 1, 0]
    assert _schedule(redis_server, prefix) == {}
    assert len(_queued(amqp_url)) == 1


def test_a_failed_publish_is_due_again_a_second_later(
    redis_server: RedisServer, amqp_url: str
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    assert _run(redis_server, prefix, Refused(amqp_url), NOW) == [0]
    assert _schedule(redis_server, prefix) == {f"{PUBLISHING}n1": NOW + RETRY_PUBLISH_AFTER}
    assert _run(redis_server, prefix, AmqpSink(amqp_url), NOW + 0.5) == [0]
    assert _run(redis_server, prefix, AmqpSink(amqp_url), NOW + RETRY_PUBLISH_AFTER) == [1]
    assert _schedule(redis_server, prefix) == {}
    assert len(_queued(amqp_url)) == 1


def test_a_delivery_scheduled_while_publishing_stays(
    redis_server: RedisServer, amqp_url: str
) -> None:
    # The published message was taken by a worker that found the record busy and scheduled a
    # look at it for later before this dispatcher's confirm arrived: that entry must stay.
    prefix = f"t-{uuid.uuid4().hex[:8]}"

    class DefersFirst(AmqpSink):
        async def publish(self, messages: Sequence[bytes | str]) -> None:
            await super().publish(messages)
            client = connect_redis(redis_server.url)
            store = NotificationStore(client, prefix=prefix)
            try:
                await store.defer("n1", until=NOW + 60, message=deliver_message("n1"))
            finally:
                await client.aclose()

    assert _run(redis_server, prefix, DefersFirst(amqp_url), NOW) == [1]
    assert _schedule(redis_server, prefix) == {"n1": NOW + 60}
    body = json.loads(redis_server.client().hget(f"{prefix}:scheduled:messages", "n1") or "{}")
    assert body["headers"]["task"] == "notifier.deliver"


def test_an_id_accepted_again_while_queued_is_published_again(
    redis_server: RedisServer, amqp_url: str
) -> None:
    # An event task whose worker died after writing the record but before publishing: the
    # event comes back, its notification ids are the same, and its accept publishes now.
    prefix = f"t-{uuid.uuid4().hex[:8]}"

    async def accept(sink: AmqpSink) -> str:
        client = connect_redis(redis_server.url)
        store = NotificationStore(client, prefix=prefix, sink=sink)
        try:
            result = await store.accept(
                notification_id="e1", fields=FIELDS, message=deliver_message("e1"), now=NOW
            )
            return f"{result.status} created={result.created}"
        except asyncio.CancelledError:
            return "killed"
        finally:
            await client.aclose()
            sink.close()

    assert asyncio.run(accept(DiesBeforePublishing(amqp_url))) == "killed"
    assert _queued(amqp_url) == []
    assert asyncio.run(accept(AmqpSink(amqp_url))) == "queued created=False"
    assert _queued(amqp_url) == ["e1"]

    client = redis_server.client()
    try:
        client.hset(f"{prefix}:n:e1", "status", "sent")
    finally:
        client.close()
    assert asyncio.run(accept(AmqpSink(amqp_url))) == "sent created=False"
    assert _queued(amqp_url) == []

"""Where queued task messages go when the broker is RabbitMQ (BROKER_URL=amqp://...).

With the Redis broker the store's Lua scripts push a message onto the queue list in the same
atomic step that writes its record. RabbitMQ cannot take part in that step, so the store writes
the record first (status ``queued``) and then hands the message to an :class:`AmqpSink`, which
publishes it with publisher confirms. A failed publish leaves a ``queued`` record that the
recovery sweep (``notifier.worker.recovery``) requeues through the same sink: nothing is lost.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from kombu import Connection, Exchange, Producer, Queue
from kombu.utils.json import loads as json_loads

from notifier.messages import DEFAULT_QUEUE, WEBHOOKS_QUEUE
from notifier.settings import Settings

__all__ = ["AmqpSink", "MessageSink", "amqp_queues", "message_sink", "publish_arguments"]

log = logging.getLogger(__name__)

#: RabbitMQ quorum queues: replicated, and durable across a broker restart.
QUORUM = {"x-queue-type": "quorum"}


def amqp_queues() -> tuple[Queue, ...]:
    """The queues as the worker and the sink declare them on RabbitMQ (the two must match)."""
    return tuple(
        Queue(name, Exchange(name), routing_key=name, queue_arguments=QUORUM)
        for name in (DEFAULT_QUEUE, WEBHOOKS_QUEUE)
    )


class MessageSink(Protocol):
    """Publishes task messages whose records the store has already written."""

    async def publish(self, messages: Sequence[bytes | str]) -> None:
        """Publish ``messages`` (kombu Redis-transport envelopes); raises on failure."""

    def close(self) -> None:
        """Release the broker connection."""


class AmqpSink:
    """Publishes to RabbitMQ with publisher confirms, one connection on its own thread.

    kombu is synchronous; a single worker thread keeps the connection to one thread at a time
    and the event loop free while the broker confirms.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        # Declared before the first publish on a connection (kombu remembers), as the worker does.
        self.queues = list(amqp_queues())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amqp-sink")
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    async def publish(self, messages: Sequence[bytes | str]) -> None:
        if messages:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._publish, list(messages))

    def _publish(self, messages: list[bytes | str]) -> None:
        done = 0
        # A second try on a fresh connection: an idle one may have been closed by the broker
        # (a restart, a load balancer). A message the first try published unconfirmed may go
        # out twice; the claim lets only one delivery send.
        for attempt in (1, 2):
            try:
                producer = self._get_producer()
                for message in messages[done:]:
                    producer.publish(**publish_arguments(message), declare=self.queues, retry=False)
                    done += 1
                return
            except Exception:
                self._drop_connection()
                if attempt == 2:
                    raise

    def _get_producer(self) -> Producer:
        if self._producer is None:
            # confirm_publish: each publish returns once RabbitMQ has the message (or raises).
            connection = Connection(
                self.url, transport_options={"confirm_publish": True}, connect_timeout=5
            )
            connection.ensure_connection(max_retries=1)
            self._connection = connection
            self._producer = Producer(connection.default_channel)
        return self._producer

    def _drop_connection(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # already broken: nothing more to release
                log.debug("closing the RabbitMQ connection failed", exc_info=True)

    def close(self) -> None:
        self._executor.submit(self._drop_connection).result()
        self._executor.shutdown(wait=True)


def publish_arguments(message: bytes | str) -> dict[str, Any]:
    """``Producer.publish`` arguments for a message built by ``notifier.messages``."""
    envelope = json_loads(message)
    properties = envelope["properties"]
    delivery = properties.get("delivery_info") or {}
    routing_key = delivery.get("routing_key") or DEFAULT_QUEUE
    return {
        # Bytes with a content type are sent as they are: the same body a send_task makes.
        "body": base64.b64decode(envelope["body"]),
        "content_type": envelope["content-type"],
        "content_encoding": envelope["content-encoding"],
        "headers": envelope["headers"],
        "exchange": routing_key,
        "routing_key": routing_key,
        "delivery_mode": properties.get("delivery_mode", 2),
        "correlation_id": properties.get("correlation_id"),
        "reply_to": properties.get("reply_to") or None,
        "priority": properties.get("priority", 0),
    }


def message_sink(settings: Settings) -> MessageSink | None:
    """The AMQP sink when BROKER_URL names RabbitMQ; None keeps the atomic Redis push."""
    return AmqpSink(settings.broker_url) if settings.uses_amqp else None

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
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from kombu import Connection, Exchange, Producer, Queue
from kombu.utils.json import loads as json_loads

from notifier.errors import ConfigurationError
from notifier.messages import DEFAULT_QUEUE, WEBHOOKS_QUEUE
from notifier.settings import Settings
from notifier.storage.connection import redact_url

__all__ = [
    "AmqpSink",
    "MessageSink",
    "amqp_broker_config",
    "amqp_queues",
    "amqp_ssl_options",
    "check_broker_config",
    "describe_broker_error",
    "message_sink",
    "publish_arguments",
    "publisher_config",
]

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

    def __init__(self, url: str, *, ssl: dict[str, Any] | None = None) -> None:
        self.url = url
        self.ssl = ssl  # amqp_ssl_options(): None for amqp://, verification for amqps://
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
            except Exception as exc:
                self._drop_connection()
                if is_broker_configuration_error(exc):
                    # An untrusted certificate or refused login: a second try cannot help.
                    raise ConfigurationError(_describe(exc, self.url, self.ssl)) from exc
                if attempt == 2:
                    raise

    def _get_producer(self) -> Producer:
        if self._producer is None:
            # confirm_publish: each publish returns once RabbitMQ has the message (or raises).
            connection = Connection(
                self.url,
                ssl=dict(self.ssl) if self.ssl else False,  # kombu writes server_hostname in
                transport_options={"confirm_publish": True},
                connect_timeout=5,
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
    if not settings.uses_amqp:
        return None
    return AmqpSink(settings.broker_url, ssl=amqp_ssl_options(settings))


# TLS to RabbitMQ (amqps://) and telling a wrong setting from a broker that is down.


def amqp_ssl_options(settings: Settings) -> dict[str, Any] | None:
    """py-amqp's ``ssl`` options (kombu ``Connection(ssl=...)``, Celery ``broker_use_ssl``)
    for an amqps:// BROKER_URL; None for amqp://.

    Verification on: the certificate must chain to BROKER_TLS_CA_FILE (else the system CAs)
    and name the URL's host (``server_hostname`` None: kombu fills in the host it connects to,
    which also turns on py-amqp's host-name check).
    """
    if not settings.broker_uses_tls:
        return None
    options: dict[str, Any]
    if settings.broker_tls_verify:
        options = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None}
    else:
        options = {"cert_reqs": ssl.CERT_NONE}
    if settings.broker_tls_ca_file is not None:
        options["ca_certs"] = str(settings.broker_tls_ca_file)
    if settings.broker_tls_cert_file is not None:
        options["certfile"] = str(settings.broker_tls_cert_file)
    if settings.broker_tls_key_file is not None:
        options["keyfile"] = str(settings.broker_tls_key_file)
    return options


def _error_text(exc: BaseException) -> str:
    """The error and what it wraps (kombu re-raises py-amqp's and ssl's errors as its own)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 5:
        text = " ".join(str(seen).split()) or type(seen).__name__
        if text not in parts:
            parts.append(text)
        seen = seen.__cause__ or seen.__context__
    return "; ".join(parts)


def is_broker_configuration_error(exc: BaseException) -> bool:
    """A failure that retrying cannot fix: an untrusted or refused certificate, a refused
    login or vhost, TLS spoken to a plain port."""
    text = _error_text(exc).upper()
    markers = ("CERTIFICATE_VERIFY_FAILED", "ACCESS_REFUSED", "NOT_ALLOWED", "WRONG_VERSION_NUMBER")
    return any(marker in text for marker in markers) or ("SSL" in text and "ALERT" in text)


def _describe(exc: BaseException, url: str, ssl_options: dict[str, Any] | None) -> str:
    text = _error_text(exc)
    password = urlsplit(url).password
    for secret in (password, unquote(password or "")):
        if secret:
            text = text.replace(secret, "***")
    target = redact_url(url)
    upper = text.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper:
        ca = (ssl_options or {}).get("ca_certs") or "the system's CA bundle"
        return f"BROKER_TLS_CA_FILE: the certificate of {target} is not trusted by {ca} ({text})"
    if "CERTIFICATE_REQUIRED" in upper or "CERTIFICATE_UNKNOWN" in upper or "UNKNOWN_CA" in upper:
        return (
            f"BROKER_TLS_CERT_FILE / BROKER_TLS_KEY_FILE: {target} refused the client "
            f"certificate or wants one ({text})"
        )
    if "ACCESS_REFUSED" in upper:
        return f"BROKER_URL: {target} refused the username or password ({text})"
    if "NOT_ALLOWED" in upper:
        return f"BROKER_URL: {target} refused access to the vhost ({text})"
    if "SSL" in upper or "TLS" in upper:
        return f"BROKER_URL / BROKER_TLS_*: TLS with {target} failed ({text})"
    return f"BROKER_URL: {target} is unreachable ({text})"


def describe_broker_error(exc: BaseException, settings: Settings) -> str:
    """One line saying what went wrong with BROKER_URL and which setting to look at; never
    a password."""
    return _describe(exc, settings.broker_url, amqp_ssl_options(settings))


def check_broker_config(settings: Settings, *, timeout: float = 5.0) -> None:
    """Connect to RabbitMQ once (BROKER_URL); ConfigurationError (one line naming the setting)
    for a certificate that does not verify or a refused login. A broker that is merely down
    passes: a worker started before RabbitMQ waits for it. Nothing to do for Redis."""
    if not settings.uses_amqp:
        return
    options = amqp_ssl_options(settings)
    # A TLS 1.3 listener that wants a client certificate rejects it after the handshake, and
    # its alert often loses the race with the connection closing: the client then sees only
    # "EOF occurred in violation of protocol" (2 of 5 tries here; all 3 tries of one run on a
    # loaded CI machine). A few tries usually get the alert; if not, and no client certificate
    # was offered, that is what the silence means.
    text = ""
    for attempt in range(3):
        if attempt:
            time.sleep(0.2)
        connection = Connection(settings.broker_url, ssl=options or False, connect_timeout=timeout)
        try:
            connection.ensure_connection(max_retries=0)
            return
        except Exception as exc:
            if is_broker_configuration_error(exc):
                raise ConfigurationError(describe_broker_error(exc, settings)) from None
            text = _error_text(exc)
            if not (options and "EOF OCCURRED IN VIOLATION" in text.upper()):
                log.debug("RabbitMQ not reachable at start: %s", redact_url(settings.broker_url))
                return
        finally:
            connection.release()
    if options and "certfile" not in options:
        raise ConfigurationError(
            f"BROKER_TLS_CERT_FILE / BROKER_TLS_KEY_FILE: {redact_url(settings.broker_url)} "
            f"closed every TLS connection right after the handshake without a client "
            f"certificate; it most likely wants one ({text})"
        )


def amqp_broker_config(settings: Settings) -> dict[str, Any]:
    """RabbitMQ as the broker (BROKER_URL): quorum queues, publisher confirms; the result
    backend stays on REDIS_URL."""
    return {
        "broker_url": settings.broker_url,
        "broker_transport": None,
        # amqps://: verify against BROKER_TLS_CA_FILE (client certificate for mutual TLS).
        "broker_use_ssl": amqp_ssl_options(settings),
        # Quorum queues need confirms and no global QoS (Celery detects the queue type).
        "broker_transport_options": {"confirm_publish": True},
        "worker_detect_quorum_queues": True,
        # What a bare publisher sets too, so its declaration of "celery" matches the worker's.
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        "task_queues": amqp_queues(),
    }


def publisher_config(settings: Settings, redis_config: dict[str, Any]) -> dict[str, Any]:
    """A publish-only Celery app's configuration (the CLI's health probe and ping):
    ``redis_config`` (broker and result backend on REDIS_URL), with RabbitMQ as the broker
    when BROKER_URL is set, declared as the worker declares it."""
    if not settings.uses_amqp:
        return redis_config
    return {**redis_config, **amqp_broker_config(settings)}

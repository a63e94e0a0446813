"""One factory for every Redis client: TLS, auth and Sentinel from settings.

The store, the rate limiter, the API, the CLI, the dispatcher and the recovery sweep get their
clients here; the Celery broker and result backend get their URLs and options here too.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.sentinel import Sentinel

from notifier.errors import ConfigurationError
from notifier.settings import Settings

__all__ = [
    "broker_url",
    "celery_client_config",
    "celery_redis_config",
    "check_redis",
    "check_redis_config",
    "connect_async",
    "connect_sync",
    "describe_redis_error",
    "is_configuration_error",
    "redact_url",
    "result_backend_url",
    "sentinel_transport_options",
    "tls_options",
    "uses_tls",
    "wait_for_replicas",
]

#: Most connections one asyncio client opens at once. redis-py's own pool raises
#: MaxConnectionsError ("Too many connections") past its default of 100, which a worker process
#: with many sends in flight, or an API process under load, reached; ours wait for a free
#: connection instead (at most ``socket_timeout``), as redis-py's BlockingConnectionPool does.
ASYNC_MAX_CONNECTIONS = 256


class _BlockingSentinelConnectionPool(AsyncSentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's connections under Sentinel, waiting for a free one like the URL's pool."""


#: Client defaults: fail fast on a dead server, and probe idle pooled connections.
_ASYNC_DEFAULTS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "health_check_interval": 30,
}


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def uses_tls(settings: Settings) -> bool:
    return settings.redis_url.startswith("rediss://")


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS keyword arguments for a ``rediss://`` REDIS_URL (empty otherwise)."""
    if not uses_tls(settings):
        return {}
    options: dict[str, Any] = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED if settings.redis_tls_verify else ssl.CERT_NONE,
        "ssl_check_hostname": settings.redis_tls_verify,
    }
    if settings.redis_tls_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    if settings.redis_tls_cert_file is not None:
        options["ssl_certfile"] = str(settings.redis_tls_cert_file)
    if settings.redis_tls_key_file is not None:
        options["ssl_keyfile"] = str(settings.redis_tls_key_file)
    return options


def _credentials(settings: Settings) -> dict[str, Any]:
    """Username, password and database of REDIS_URL (the master's, under Sentinel)."""
    parts = urlsplit(settings.redis_url)
    path = parts.path.strip("/")
    return {
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "db": int(path) if path.isdigit() else 0,
    }


def _sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their own auth, and TLS like the master."""
    kwargs: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    if settings.redis_sentinel_username:
        kwargs["username"] = settings.redis_sentinel_username
    if settings.redis_sentinel_password is not None:
        kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    if uses_tls(settings):
        kwargs.update(ssl=True, **tls_options(settings))
    return kwargs


def _sentinel_master_kwargs(settings: Settings) -> dict[str, Any]:
    credentials = {k: v for k, v in _credentials(settings).items() if v is not None}
    if uses_tls(settings):
        credentials.update(ssl=True, **tls_options(settings))
    return credentials


def connect_async(settings: Settings, **options: Any) -> aioredis.Redis:
    """An asyncio client (decoded replies); connections open lazily on the running loop.

    Under Sentinel (REDIS_SENTINELS) the client asks the sentinels for the master on every new
    connection, so it follows a failover without a restart.
    """
    options = {**_ASYNC_DEFAULTS, **options}
    if settings.redis_sentinels:
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses,
            sentinel_kwargs=_sentinel_kwargs(settings),
            **_sentinel_master_kwargs(settings),
        )
        master_name = settings.redis_sentinel_master or ""
        client: aioredis.Redis = sentinel.master_for(
            master_name,
            decode_responses=True,
            connection_pool_class=_BlockingSentinelConnectionPool,
            **_pool_limits(options),
            **options,
        )
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        **_pool_limits(options),
        **tls_options(settings),
        **options,
    )
    return aioredis.Redis.from_pool(pool)


def _pool_limits(options: dict[str, Any]) -> dict[str, Any]:
    """The pool's size and how long a command may wait for one of its connections."""
    return {"max_connections": ASYNC_MAX_CONNECTIONS, "timeout": options["socket_timeout"]}


def connect_sync(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client (bytes replies) for the CLI and probes, like :func:`connect_async`."""
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses,
            sentinel_kwargs=_sentinel_kwargs(settings),
            **_sentinel_master_kwargs(settings),
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master or "", **options
        )
        return master
    return redis.Redis.from_url(settings.redis_url, **tls_options(settings), **options)


def describe_redis_error(exc: BaseException, settings: Settings) -> str:
    """One line saying what went wrong and which setting to look at; never a password."""
    text = " ".join(str(exc).split())
    password = _credentials(settings)["password"]
    for secret in (password, quote(password or "", safe="")):
        if secret:
            text = text.replace(secret, "***")
    target = redact_url(settings.redis_url)
    if settings.redis_sentinels:
        target = f"the master {settings.redis_sentinel_master!r} of REDIS_SENTINELS"
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(exc, ssl.SSLCertVerificationError):
        setting = "REDIS_TLS_CA_FILE"
        ca = settings.redis_tls_ca_file or "the system's CA bundle"
        return f"{setting}: the certificate of {target} is not trusted by {ca} ({text})"
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return f"REDIS_URL: {target} refused the username or password ({text})"
    if "SSL" in text or "TLS" in text:
        return f"REDIS_URL / REDIS_TLS_*: TLS with {target} failed ({text})"
    return f"REDIS_URL: {target} is unreachable ({text})"


def is_configuration_error(exc: BaseException) -> bool:
    """A failure that retrying cannot fix: an untrusted certificate or refused credentials."""
    text = str(exc)
    return (
        isinstance(exc, redis.AuthenticationError)
        or "CERTIFICATE_VERIFY_FAILED" in text
        or "WRONGPASS" in text
        or "NOAUTH" in text
    )


def check_redis(settings: Settings, *, timeout: float = 3.0) -> None:
    """PING Redis once; ConfigurationError (one line naming the setting) when it fails."""
    client = connect_sync(settings, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise ConfigurationError(describe_redis_error(exc, settings)) from None
    finally:
        client.close()


def check_redis_config(settings: Settings, *, timeout: float = 3.0) -> None:
    """Like :func:`check_redis`, but a Redis that is merely down passes: a worker started
    before Redis waits for it, while a distrusted certificate or a wrong password never heals.
    """
    client = connect_sync(settings, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        if is_configuration_error(exc):
            raise ConfigurationError(describe_redis_error(exc, settings)) from None
    finally:
        client.close()


# Celery: the broker (kombu) and the result backend.


def _celery_url(scheme: str, settings: Settings) -> str:
    """A ``sentinel://`` URL list for Celery: one entry per sentinel, the master's auth and db."""
    parts = urlsplit(settings.redis_url)
    auth = ""
    if parts.password is not None or parts.username:
        auth = f"{parts.username or ''}:{parts.password or ''}@"
    db = _credentials(settings)["db"]
    return ";".join(
        f"{scheme}://{auth}{host}:{port}/{db}" for host, port in settings.sentinel_addresses
    )


def broker_url(settings: Settings) -> str:
    return _celery_url("sentinel", settings) if settings.redis_sentinels else settings.redis_url


def result_backend_url(settings: Settings) -> str:
    return broker_url(settings)


def sentinel_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's and Celery's Sentinel options (empty without REDIS_SENTINELS)."""
    if not settings.redis_sentinels:
        return {}
    return {
        "master_name": settings.redis_sentinel_master,
        "sentinel_kwargs": _sentinel_kwargs(settings),
    }


def celery_redis_config(settings: Settings) -> dict[str, Any]:
    """Broker and result-backend URLs, and their TLS options (``broker_use_ssl`` etc.)."""
    config: dict[str, Any] = {
        "broker_url": broker_url(settings),
        "result_backend": result_backend_url(settings),
    }
    if uses_tls(settings):
        ssl_config = {
            key: value for key, value in tls_options(settings).items() if key.startswith("ssl_")
        }
        config["broker_use_ssl"] = ssl_config
        config["redis_backend_use_ssl"] = ssl_config
    return config


def celery_client_config(settings: Settings) -> dict[str, Any]:
    """What a publish-only Celery app (CLI, probes) needs to reach the broker and backend."""
    return {
        **celery_redis_config(settings),
        "broker_transport_options": sentinel_transport_options(settings),
        "result_backend_transport_options": sentinel_transport_options(settings),
    }


async def wait_for_replicas(
    redis: aioredis.Redis, *, replicas: int, timeout_ms: int, barrier_key: str
) -> int:
    """Block until every write made so far reached ``replicas`` replicas, or ``timeout_ms``.

    WAIT covers the writes of the connection it runs on, and a pooled client may have made
    the accept on another one; so write a barrier first on this connection. The replication
    stream is ordered, so once a replica holds the barrier it holds every earlier write.
    Returns the number of replicas that acknowledged.
    """
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(barrier_key)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        _, acknowledged = await pipe.execute()
    return int(acknowledged)

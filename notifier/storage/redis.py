"""The asyncio Redis client and the one place Redis outages become StoreUnavailable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notifier.errors import StoreUnavailable

__all__ = ["REDIS_UNREACHABLE", "connect_redis", "map_redis_errors"]

#: What a client raises when Redis cannot be reached (a refused or reset socket is an OSError).
REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)


def connect_redis(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio Redis client; connections are opened lazily on the running loop."""
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("socket_timeout", 10)
    options.setdefault("health_check_interval", 30)
    return aioredis.Redis.from_url(url, decode_responses=True, **options)


@contextmanager
def map_redis_errors() -> Iterator[None]:
    """Turn a Redis connection error or timeout inside the block into :class:`StoreUnavailable`.

    ``with map_redis_errors(): await redis.get(key)``. Other Redis errors (a script error, a
    wrong type) are bugs and pass through unchanged.
    """
    try:
        yield
    except StoreUnavailable:
        # Itself a ConnectionError (an OSError): pass it on rather than wrap it twice.
        raise
    except REDIS_UNREACHABLE as exc:
        raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc

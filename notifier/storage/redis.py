"""The asyncio Redis client and the one place Redis outages become StoreUnavailable."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notifier.errors import StoreUnavailable

__all__ = ["REDIS_UNREACHABLE", "connect_redis", "map_redis_errors"]

P = ParamSpec("P")
T = TypeVar("T")

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


class map_redis_errors:
    """Turn a Redis connection error or timeout into :class:`StoreUnavailable`.

    A context manager (``with map_redis_errors(): await redis.get(key)``) and a decorator for
    coroutine functions (``@map_redis_errors()``). Other Redis errors (a script error, a wrong
    type) are bugs and pass through unchanged.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # StoreUnavailable is itself a ConnectionError: pass it on rather than wrap it twice.
        if isinstance(exc, REDIS_UNREACHABLE) and not isinstance(exc, StoreUnavailable):
            raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc

    def __call__(self, function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with self:
                return await function(*args, **kwargs)

        return wrapper

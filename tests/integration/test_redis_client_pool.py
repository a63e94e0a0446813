"""The asyncio Redis client every process uses waits for a free pooled connection.

redis-py's default pool raises MaxConnectionsError ("Too many connections") once 100 commands
are in flight at once; a worker process with many sends in flight or an API process under
load went past that, and every command over the limit failed as "Redis unreachable".
"""

from __future__ import annotations

import asyncio

from notifier.settings import load_settings
from notifier.storage.connection import ASYNC_MAX_CONNECTIONS, connect_async
from tests.support.redis_server import RedisServer


def test_more_commands_at_once_than_the_pool_has_connections_all_succeed(
    redis_server: RedisServer,
) -> None:
    in_flight = ASYNC_MAX_CONNECTIONS + 200

    async def main() -> tuple[list[object], int]:
        client = connect_async(load_settings(redis_url=redis_server.url))
        try:
            # Each BLPOP holds its connection for 0.2 s: far more at once than the pool has.
            replies = await asyncio.gather(
                *(client.blpop([f"empty-{i}"], timeout=0.2) for i in range(in_flight)),
                return_exceptions=True,
            )
            opened = len(client.connection_pool._available_connections)
            return list(replies), opened
        finally:
            await client.aclose()

    replies, opened = asyncio.run(main())
    assert [r for r in replies if isinstance(r, BaseException)] == []
    assert replies == [None] * in_flight
    assert opened <= ASYNC_MAX_CONNECTIONS  # bounded: the rest waited for a connection

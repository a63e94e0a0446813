"""Reading notification records straight from Redis, and waiting for a status."""

from __future__ import annotations

import asyncio
import time

from notifier.storage.store import NotificationRecord, NotificationStore, connect_redis


def read_record(redis_url: str, notification_id: str) -> NotificationRecord | None:
    async def read() -> NotificationRecord | None:
        redis = connect_redis(redis_url)
        try:
            return await NotificationStore(redis).find(notification_id)
        finally:
            await redis.aclose()

    return asyncio.run(read())


def wait_for_status(
    redis_url: str, notification_id: str, statuses: set[str], *, timeout: float = 20.0
) -> NotificationRecord:
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        record = read_record(redis_url, notification_id)
        if record is not None and record.status in statuses:
            return record
        time.sleep(0.05)
    raise AssertionError(
        f"notification {notification_id} did not reach {statuses}: "
        f"{record.status if record else 'no record'}"
    )

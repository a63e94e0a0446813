"""The read side of NotificationStore: records, pages of an index, counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

from notifier.errors import NotificationNotFound
from notifier.storage.keys import Keys
from notifier.storage.paging import format_cursor, parse_cursor
from notifier.storage.records import STATUSES, NotificationRecord, RecordPage
from notifier.storage.redis import map_redis_errors

__all__ = ["RecordReader"]

T = TypeVar("T")


class RecordReader:
    """Reads of notification records; the base class of ``NotificationStore``.

    Every method raises StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    @property
    def queue(self) -> str:
        return self.keys.queue

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        with map_redis_errors():
            return await operation()

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis operation of a module built on this store (``notifier.worker.recovery``,
        ``notifier.events``), turning connection errors into StoreUnavailable."""
        return await self._call(operation)

    async def _ids_up_to(self, key: str, score: float, *, offset: int, count: int) -> list[str]:
        """Up to ``count`` members of the sorted set ``key`` scored at most ``score``, from
        ``offset``, lowest score first."""
        ids = await self._call(
            lambda: self.redis.zrangebyscore(key, "-inf", repr(score), offset, count)
        )
        return [str(member) for member in ids]

    async def get(self, notification_id: str) -> NotificationRecord:
        async def read() -> tuple[dict[str, str], list[str], list[str]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys.record(notification_id))
                pipe.lrange(self.keys.attempts(notification_id), 0, -1)
                pipe.lrange(self.keys.feedback(notification_id), 0, -1)
                data, attempts, feedback = await pipe.execute()
            return data, attempts, feedback

        data, attempts, feedback = await self._call(read)
        if not data:
            raise NotificationNotFound(notification_id)
        return NotificationRecord.from_hash(data, attempts, feedback)

    async def find(self, notification_id: str) -> NotificationRecord | None:
        try:
            return await self.get(notification_id)
        except NotificationNotFound:
            return None

    async def list(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RecordPage:
        """Records newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
        key = self.keys.index(status)
        max_score: str = "+inf"
        after: tuple[float, str] | None = None
        if cursor:
            max_score, score, last_id = parse_cursor(cursor)
            after = (score, last_id)
        ids: list[tuple[str, float]] = []
        offset = 0
        while len(ids) < limit + 1:
            batch: list[tuple[str, float]] = await self._call(
                lambda offset=offset: self.redis.zrevrangebyscore(  # type: ignore[misc,arg-type]
                    key, max_score, "-inf", start=offset, num=limit + 1, withscores=True
                )
            )
            if not batch:
                break
            offset += len(batch)
            for member, score in batch:
                # Equal scores come in descending id order; resume strictly after the cursor.
                if after and score == after[0] and member >= after[1]:
                    continue
                ids.append((member, score))
        page = ids[:limit]
        records = []
        for member, _ in page:
            record = await self.find(member)
            if record is not None:
                records.append(record)
        next_cursor = None
        if len(ids) > limit and page:
            last_id, last_score = page[-1]
            next_cursor = format_cursor(last_score, last_id)
        return RecordPage(records=tuple(records), next_cursor=next_cursor)

    async def counts(self) -> dict[str, int]:
        async def read() -> list[int]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for status in STATUSES:
                    pipe.zcard(self.keys.status(status))
                result: list[int] = await pipe.execute()
            return result

        values = await self._call(read)
        return dict(zip(STATUSES, values, strict=True))

    async def scheduled_count(self) -> int:
        return int(await self._call(lambda: self.redis.zcard(self.keys.scheduled)))

    async def queue_length(self) -> int:
        return int(await self._call(lambda: self.redis.llen(self.queue)))

    async def ping(self) -> None:
        await self._call(self.redis.ping)

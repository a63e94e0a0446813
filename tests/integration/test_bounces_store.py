"""SuppressionStore against a real redis-server: expiry, categories, the soft-bounce window,
replays and paging."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from notifier.storage.redis import connect_redis
from notifier.storage.suppressions import SuppressionEntry, SuppressionStore
from tests.support.redis_server import RedisServer

T = TypeVar("T")


@pytest.fixture
def run(redis_server: RedisServer) -> Callable[[Callable[[SuppressionStore], Awaitable[T]]], T]:
    prefix = f"st{uuid.uuid4().hex[:8]}"

    def runner(operation: Callable[[SuppressionStore], Awaitable[T]]) -> T:
        async def go() -> T:
            redis = connect_redis(redis_server.url)
            try:
                return await operation(SuppressionStore(redis, prefix=prefix))
            finally:
                await redis.aclose()

        return asyncio.run(go())

    return runner


def entry(address: str, **fields: Any) -> SuppressionEntry:
    values: dict[str, Any] = {"reason": "manual", "source": "test", "created": time.time()}
    values.update(fields)
    return SuppressionEntry(address=address, **values)


def test_expired_entries_do_not_apply_and_leave_the_index(run: Any) -> None:
    async def scenario(store: SuppressionStore) -> None:
        await store.put(entry("gone@example.com", expires=time.time() - 1))
        await store.put(entry("kept@example.com", expires=time.time() + 3600))
        assert await store.get("gone@example.com") is None
        found = await store.matching(["gone@example.com", "kept@example.com"])
        assert list(found) == ["kept@example.com"]
        assert await store.size() == 1
        page = await store.page()
        assert [e.address for e in page.entries] == ["kept@example.com"]

    run(scenario)


def test_categories(run: Any) -> None:
    async def scenario(store: SuppressionStore) -> None:
        await store.put(entry("all@example.com"))
        await store.put(entry("news@example.com", category="newsletter", reason="unsubscribe"))
        recipients = ["all@example.com", "news@example.com", "free@example.com"]
        assert list(await store.matching(recipients)) == ["all@example.com"]
        in_newsletter = await store.matching(recipients, category="newsletter")
        assert sorted(in_newsletter) == ["all@example.com", "news@example.com"]
        assert in_newsletter["news@example.com"].reason == "unsubscribe"
        assert list(await store.matching(recipients, category="billing")) == ["all@example.com"]
        only_news = await store.page(category="newsletter")
        assert [e.address for e in only_news.entries] == ["news@example.com"]
        assert await store.remove("news@example.com") is False  # the entry has a category
        assert await store.remove("news@example.com", "newsletter") is True

    run(scenario)


def test_soft_bounces_outside_the_window_do_not_count(run: Any) -> None:
    def soft(store: SuppressionStore, number: int, at: float) -> Awaitable[Any]:
        return store.apply_feedback(
            dedupe_key=f"soft-{number}",
            kind="soft_bounce",
            event={"type": "soft_bounced"},
            notification_id=None,
            address="full@example.com",
            entry=entry("full@example.com", reason="hard_bounce", source="dsn"),
            soft_window=100.0,
            soft_limit=2,
            now=at,
        )

    async def scenario(store: SuppressionStore) -> None:
        start = time.time()
        first = await soft(store, 1, start - 500)  # long ago: outside the window by then
        assert (first.suppressed, first.soft_count) == (False, 1)
        second = await soft(store, 2, start)
        assert (second.suppressed, second.soft_count) == (False, 1)
        assert (await soft(store, 2, start)).outcome == "duplicate"  # a replay counts nothing
        third = await soft(store, 3, start + 1)
        assert (third.suppressed, third.soft_count) == (True, 2)
        assert (await store.get("full@example.com")) is not None

    run(scenario)


def test_a_hard_bounce_suppresses_once_and_keeps_the_first_entry(run: Any) -> None:
    async def scenario(store: SuppressionStore) -> None:
        for number, source in ((1, "dsn"), (2, "ses")):
            outcome = await store.apply_feedback(
                dedupe_key=f"hard-{number}",
                kind="hard_bounce",
                event={"type": "bounced"},
                notification_id=None,
                address="dead@example.com",
                entry=entry("dead@example.com", reason="hard_bounce", source=source),
                soft_window=100.0,
                soft_limit=3,
            )
            assert outcome.suppressed == (number == 1)
        kept = await store.get("dead@example.com")
        assert kept is not None and kept.source == "dsn"

    run(scenario)


def test_pages_cover_everything_once_with_equal_creation_times(run: Any) -> None:
    async def scenario(store: SuppressionStore) -> None:
        same = time.time()
        await store.put_many([entry(f"u{n:02d}@example.com", created=same) for n in range(25)])
        await store.put(entry("other@example.org", reason="complaint"))
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.page(limit=7, cursor=cursor, domain="EXAMPLE.com")
            seen.extend(e.address for e in page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == [f"u{n:02d}@example.com" for n in range(25)]
        complaints = await store.page(reason="complaint")
        assert [e.address for e in complaints.entries] == ["other@example.org"]

    run(scenario)

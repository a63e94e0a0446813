"""Every Lua transition of NotificationStore, run directly against a real redis-server.

Each test gets a store with its own key prefix and queue, drives one script through the
store's public method with a fixed clock, and checks both the reply and what is in Redis.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

import orjson
import pytest
import redis

from notifier.errors import InvalidTransition, NotificationNotFound, StoreUnavailable
from notifier.settings import RateLimit
from notifier.storage import scripts
from notifier.storage.keys import Keys
from notifier.storage.ratelimit import RateLimiter
from notifier.storage.records import STATUSES
from notifier.storage.store import (
    AcceptItem,
    AcceptResult,
    Attempt,
    ClaimResult,
    NotificationRecord,
    NotificationStore,
    connect_redis,
)
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

T = TypeVar("T")

NOW = 1_700_000_000.0
RETENTION = 3600
LEASE = 30.0
FIELDS = {"source": "api", "to": '["a@example.org"]', "template": "welcome"}


@dataclass
class StoreCase:
    """A store under a fresh prefix and queue, and a plain client to inspect Redis with."""

    url: str
    keys: Keys
    redis: redis.Redis

    def run(self, scenario: Callable[[NotificationStore], Awaitable[T]]) -> T:
        async def main() -> T:
            client = connect_redis(self.url)
            store = NotificationStore(
                client,
                prefix=self.keys.prefix,
                queue=self.keys.queue,
                retention_seconds=RETENTION,
            )
            try:
                return await scenario(store)
            finally:
                await client.aclose()

        return asyncio.run(main())

    # The client decodes replies: every member and value is a str.

    def record(self, notification_id: str) -> dict[str, str]:
        return self._hash(self.keys.record(notification_id))

    def index(self, status: str | None) -> dict[str, float]:
        return self._zset(self.keys.index(status))

    def indexed_under(self, notification_id: str) -> list[str]:
        """The statuses whose index holds ``notification_id``."""
        return [s for s in STATUSES if self.redis.zscore(self.keys.status(s), notification_id)]

    def queued(self) -> list[str]:
        """The queue's messages, oldest first (kombu pops from the right)."""
        return [str(m) for m in reversed(self.redis.lrange(self.keys.queue, 0, -1))]

    def scheduled(self) -> dict[str, float]:
        return self._zset(self.keys.scheduled)

    def scheduled_messages(self) -> dict[str, str]:
        return self._hash(self.keys.scheduled_messages)

    def _hash(self, key: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.redis.hgetall(key).items()}

    def _zset(self, key: str) -> dict[str, float]:
        pairs = cast(list[tuple[str, float]], self.redis.zrange(key, 0, -1, withscores=True))
        return dict(pairs)


@pytest.fixture
def case(redis_server: RedisServer) -> Iterator[StoreCase]:
    tag = uuid.uuid4().hex[:10]
    client = redis_server.client()
    yield StoreCase(redis_server.url, Keys(f"t-{tag}", f"q-{tag}"), client)
    client.close()


def accept(
    case: StoreCase,
    notification_id: str,
    *,
    message: bytes | None = b"msg",
    due: float | None = None,
    idempotency_key: str | None = None,
    idempotency_value: str = "",
    now: float = NOW,
) -> AcceptResult:
    return case.run(
        lambda store: store.accept(
            notification_id=notification_id,
            fields=FIELDS,
            message=message,
            due=due,
            idempotency_key=idempotency_key,
            idempotency_value=idempotency_value,
            idempotency_ttl=600,
            now=now,
        )
    )


# accept


def test_accept_creates_indexes_and_queues(case: StoreCase) -> None:
    result = case.run(
        lambda store: store.accept(notification_id="n1", fields=FIELDS, message=b"m1", now=NOW)
    )

    assert (result.id, result.status, result.created) == ("n1", "queued", True)
    record = case.record("n1")
    assert record == {
        "id": "n1",
        "status": "queued",
        "created_at": repr(NOW),
        "updated_at": repr(NOW),
        **FIELDS,
    }
    assert 0 < case.redis.ttl(case.keys.record("n1")) <= RETENTION
    assert case.index("queued") == {"n1": NOW}
    assert case.index(None) == {"n1": NOW}
    assert case.indexed_under("n1") == ["queued"]
    assert case.queued() == ["m1"]
    assert case.scheduled() == {}


def test_accept_with_due_schedules_instead_of_queueing(case: StoreCase) -> None:
    result = accept(case, "n1", message=b"later", due=NOW + 60)

    assert (result.status, result.created) == ("scheduled", True)
    assert case.record("n1")["status"] == "scheduled"
    assert case.indexed_under("n1") == ["scheduled"]
    assert case.scheduled() == {"n1": NOW + 60}
    assert case.scheduled_messages() == {"n1": "later"}
    assert case.queued() == []


def test_accept_without_message_only_creates_the_record(case: StoreCase) -> None:
    result = accept(case, "n1", message=None)

    assert (result.status, result.created) == ("queued", True)
    assert case.indexed_under("n1") == ["queued"]
    assert case.queued() == []
    assert case.scheduled() == {}


def test_accept_of_a_known_id_changes_nothing(case: StoreCase) -> None:
    accept(case, "n1", message=b"first")
    case.redis.hset(case.keys.record("n1"), "status", "sent")
    case.redis.hset(case.keys.record("n1"), "template", "kept")

    again = accept(case, "n1", message=b"second", now=NOW + 5)

    assert (again.id, again.status, again.created) == ("n1", "sent", False)
    assert case.record("n1")["template"] == "kept"
    assert case.record("n1")["updated_at"] == repr(NOW)
    assert case.queued() == ["first"]


def test_accept_with_a_seen_idempotency_key_returns_the_original(case: StoreCase) -> None:
    key = case.keys.idempotency("scope", "key-1")
    first = accept(case, "n1", idempotency_key=key, idempotency_value="n1|fp")

    assert first.created
    assert case.redis.get(key) == "n1|fp"
    assert 0 < case.redis.ttl(key) <= 600

    again = accept(case, "n2", idempotency_key=key, idempotency_value="n2|other")

    assert (again.id, again.status, again.created) == ("n1", "duplicate", False)
    assert again.idempotency_value == "n1|fp"
    assert case.record("n2") == {}
    assert case.index(None) == {"n1": NOW}
    assert case.queued() == ["msg"]
    assert case.redis.get(key) == "n1|fp"


def test_accept_many_writes_items_and_messages_together(case: StoreCase) -> None:
    accept(case, "old", message=None)
    items = [
        AcceptItem("b1", FIELDS),
        AcceptItem("b2", FIELDS, message=b"later", due=NOW + 30),
        AcceptItem("old", FIELDS, message=b"ignored"),
    ]

    results = case.run(lambda store: store.accept_many(items, messages=[b"batch"], now=NOW))

    assert [(r.id, r.status, r.created) for r in results] == [
        ("b1", "queued", True),
        ("b2", "scheduled", True),
        ("old", "queued", False),
    ]
    assert case.indexed_under("b1") == ["queued"]
    assert case.indexed_under("b2") == ["scheduled"]
    assert case.scheduled_messages() == {"b2": "later"}
    # b1 has no message of its own: the batch message names it.
    assert case.queued() == ["batch"]


# claim


def sending_record(result: ClaimResult) -> NotificationRecord:
    """The record a claim returned, which is ``sending``."""
    assert result.record is not None
    assert result.record.status == "sending"
    return result.record


def claim(case: StoreCase, notification_id: str, *, now: float = NOW) -> ClaimResult:
    return case.run(lambda store: store.claim(notification_id, lease_seconds=LEASE, now=now))


def test_claim_takes_a_queued_record_and_sets_a_lease(case: StoreCase) -> None:
    accept(case, "n1")

    result = claim(case, "n1", now=NOW + 1)

    assert result.outcome == "claimed"
    assert result.status == "queued"
    assert sending_record(result).attempt_count == 1
    record = case.record("n1")
    assert record["status"] == "sending"
    assert record["lease_until"] == repr(NOW + 1 + LEASE)
    assert record["updated_at"] == repr(NOW + 1)
    assert record["attempt_count"] == "1"
    # The index entry moves, keeping its creation-time score.
    assert case.indexed_under("n1") == ["sending"]
    assert case.index("sending") == {"n1": NOW}


def test_claim_while_the_lease_runs_is_busy_and_after_it_claims_again(case: StoreCase) -> None:
    accept(case, "n1")
    claim(case, "n1", now=NOW)

    busy = claim(case, "n1", now=NOW + LEASE - 1)

    assert busy.outcome == "busy"
    assert busy.lease_until == NOW + LEASE
    assert case.record("n1")["attempt_count"] == "1"

    again = claim(case, "n1", now=NOW + LEASE + 1)

    assert again.outcome == "claimed"
    assert again.status == "sending"
    assert case.record("n1")["attempt_count"] == "2"
    assert case.record("n1")["lease_until"] == repr(NOW + 2 * LEASE + 1)
    assert case.indexed_under("n1") == ["sending"]


@pytest.mark.parametrize("status", ["scheduled", "sent", "failed", "cancelled"])
def test_claim_of_a_record_not_pending_is_refused(case: StoreCase, status: str) -> None:
    accept(case, "n1", message=None)
    case.redis.hset(case.keys.record("n1"), "status", status)

    result = claim(case, "n1")

    assert (result.outcome, result.status) == ("done", status)
    assert case.record("n1")["status"] == status
    assert "attempt_count" not in case.record("n1")


def test_claim_of_an_unknown_id_is_missing(case: StoreCase) -> None:
    assert claim(case, "nobody").outcome == "missing"
    assert case.record("nobody") == {}


# transition


def test_refused_transition_raises_with_the_status_and_changes_nothing(case: StoreCase) -> None:
    accept(case, "n1", message=None)
    before = case.record("n1")

    with pytest.raises(InvalidTransition) as raised:
        case.run(
            lambda store: store.transition(
                "n1", allowed=("sending",), to="sent", action="queue", message=b"m", now=NOW + 1
            )
        )

    assert raised.value.status == "queued"
    assert case.record("n1") == before
    assert case.indexed_under("n1") == ["queued"]
    assert case.queued() == []


def test_transition_of_an_unknown_id_raises_not_found(case: StoreCase) -> None:
    with pytest.raises(NotificationNotFound):
        case.run(lambda store: store.transition("nobody", allowed=("queued",), to="cancelled"))
    assert case.record("nobody") == {}


def test_transition_records_the_attempt_and_schedules_the_retry(case: StoreCase) -> None:
    accept(case, "n1")
    claim(case, "n1")
    attempt = Attempt(number=1, at=NOW + 2, outcome="transient", code=451, message="later")

    previous = case.run(
        lambda store: store.transition(
            "n1",
            allowed=("sending",),
            to="retrying",
            fields={"reason": "451 later", "error_code": "451"},
            attempt=attempt,
            action="schedule",
            message=b"retry",
            due=NOW + 60,
            now=NOW + 2,
        )
    )

    assert previous == "sending"
    record = case.record("n1")
    assert (record["status"], record["reason"], record["error_code"]) == (
        "retrying",
        "451 later",
        "451",
    )
    assert record["updated_at"] == repr(NOW + 2)
    assert record["attempt_count"] == "1"  # only a claim counts an attempt
    attempts = case.redis.lrange(case.keys.attempts("n1"), 0, -1)
    assert [orjson.loads(a) for a in attempts] == [orjson.loads(attempt.as_json())]
    assert 0 < case.redis.ttl(case.keys.attempts("n1")) <= RETENTION
    assert case.indexed_under("n1") == ["retrying"]
    assert case.scheduled() == {"n1": NOW + 60}
    assert case.scheduled_messages() == {"n1": "retry"}

    read = case.run(lambda store: store.get("n1"))
    assert read.attempts == (attempt,)


def test_transition_with_queue_pushes_the_message(case: StoreCase) -> None:
    accept(case, "n1", message=None)
    case.run(
        lambda store: store.transition(
            "n1", allowed=("queued",), to="retrying", action="queue", message=b"again", now=NOW
        )
    )

    assert case.queued() == ["again"]
    assert case.indexed_under("n1") == ["retrying"]


def test_transition_with_unschedule_drops_the_pending_message(case: StoreCase) -> None:
    accept(case, "n1", message=b"later", due=NOW + 60)

    previous = case.run(
        lambda store: store.transition(
            "n1", allowed=("scheduled", "queued"), to="cancelled", action="unschedule", now=NOW
        )
    )

    assert previous == "scheduled"
    assert case.record("n1")["status"] == "cancelled"
    assert case.indexed_under("n1") == ["cancelled"]
    assert case.scheduled() == {}
    assert case.scheduled_messages() == {}
    assert case.queued() == []


def test_transition_to_the_same_status_keeps_one_index_entry(case: StoreCase) -> None:
    accept(case, "n1", message=None)
    case.run(
        lambda store: store.transition(
            "n1", allowed=("queued",), to="queued", fields={"note": "x"}, now=NOW + 3
        )
    )

    assert case.record("n1")["note"] == "x"
    assert case.index("queued") == {"n1": NOW}
    assert case.indexed_under("n1") == ["queued"]


# create_and_claim


def create_and_claim(
    case: StoreCase, notification_id: str, *, now: float = NOW
) -> tuple[ClaimResult, bool]:
    return case.run(
        lambda store: store.create_and_claim(
            notification_id, fields=FIELDS, lease_seconds=LEASE, now=now
        )
    )


def test_create_and_claim_creates_a_sending_record(case: StoreCase) -> None:
    claimed, created = create_and_claim(case, "n1")

    assert created is True
    assert (claimed.outcome, claimed.status) == ("claimed", "queued")
    assert sending_record(claimed).attempt_count == 1
    record = case.record("n1")
    assert record == {
        "id": "n1",
        "status": "sending",
        "created_at": repr(NOW),
        "updated_at": repr(NOW),
        "lease_until": repr(NOW + LEASE),
        "attempt_count": "1",
        **FIELDS,
    }
    assert 0 < case.redis.ttl(case.keys.record("n1")) <= RETENTION
    assert case.indexed_under("n1") == ["sending"]
    assert case.index(None) == {"n1": NOW}
    assert case.queued() == []


def test_create_and_claim_claims_an_existing_record(case: StoreCase) -> None:
    accept(case, "n1", message=None)

    claimed, created = create_and_claim(case, "n1", now=NOW + 1)

    assert created is False
    assert (claimed.outcome, claimed.status) == ("claimed", "queued")
    record = case.record("n1")
    assert (record["status"], record["attempt_count"]) == ("sending", "1")
    assert record["lease_until"] == repr(NOW + 1 + LEASE)
    assert case.indexed_under("n1") == ["sending"]
    assert case.index("sending") == {"n1": NOW}


def test_create_and_claim_respects_a_running_lease_and_final_statuses(case: StoreCase) -> None:
    create_and_claim(case, "n1")

    busy, created = create_and_claim(case, "n1", now=NOW + 1)
    assert (busy.outcome, busy.lease_until, created) == ("busy", NOW + LEASE, False)

    case.redis.hset(case.keys.record("n1"), "status", "sent")
    done, _ = create_and_claim(case, "n1", now=NOW + LEASE + 1)
    assert (done.outcome, done.status) == ("done", "sent")
    assert case.record("n1")["attempt_count"] == "1"


# the schedule


def test_dispatch_due_queues_due_messages_once(case: StoreCase) -> None:
    accept(case, "due", message=b"m-due", due=NOW - 1)
    accept(case, "later", message=b"m-later", due=NOW + 60)
    accept(case, "cancelled", message=b"m-cancelled", due=NOW - 2)
    case.run(
        lambda store: store.transition("cancelled", allowed=("scheduled",), to="cancelled", now=NOW)
    )
    # A retry's message is due while the record stays retrying.
    accept(case, "retry", message=None)
    case.run(
        lambda store: store.transition(
            "retry",
            allowed=("queued",),
            to="retrying",
            action="schedule",
            message=b"m-retry",
            due=NOW,
            now=NOW,
        )
    )

    queued = case.run(lambda store: store.dispatch_due(now=NOW))

    assert queued == 2
    assert sorted(case.queued()) == ["m-due", "m-retry"]
    assert case.record("due")["status"] == "queued"
    assert case.record("due")["updated_at"] == repr(NOW)
    assert case.indexed_under("due") == ["queued"]
    assert case.index("queued")["due"] == NOW
    assert case.record("retry")["status"] == "retrying"
    assert case.record("cancelled")["status"] == "cancelled"
    # Every due entry leaves the schedule, a dropped one too; the later one stays.
    assert case.scheduled() == {"later": NOW + 60}
    assert case.scheduled_messages() == {"later": "m-later"}

    assert case.run(lambda store: store.dispatch_due(now=NOW)) == 0
    assert len(case.queued()) == 2


def test_dispatch_due_honours_the_limit(case: StoreCase) -> None:
    for i in range(5):
        accept(case, f"n{i}", message=f"m{i}".encode(), due=NOW - 10 + i)

    assert case.run(lambda store: store.dispatch_due(now=NOW, limit=3)) == 3
    assert case.queued() == ["m0", "m1", "m2"]
    assert case.run(lambda store: store.dispatch_due(now=NOW, limit=3)) == 2
    assert case.scheduled() == {}


def test_concurrent_dispatchers_queue_each_message_once(case: StoreCase) -> None:
    ids = [f"n{i}" for i in range(60)]
    items = [AcceptItem(i, FIELDS, message=i.encode(), due=NOW - 1) for i in ids]
    case.run(lambda store: store.accept_many(items, now=NOW - 5))

    async def race(store: NotificationStore) -> list[int]:
        # Each call reads the same due ids before any of them removes one.
        return list(await asyncio.gather(*(store.dispatch_due(now=NOW) for _ in range(6))))

    counts = case.run(race)

    assert sum(counts) == len(ids)
    assert sorted(case.queued()) == sorted(ids)
    assert case.scheduled() == {}


def test_defer_schedules_unless_a_delivery_is_already_scheduled(case: StoreCase) -> None:
    accept(case, "n1", message=None)

    case.run(lambda store: store.defer("n1", until=NOW + 10, message=b"first"))
    case.run(lambda store: store.defer("n1", until=NOW + 99, message=b"second"))

    assert case.scheduled() == {"n1": NOW + 10}
    assert case.scheduled_messages() == {"n1": "first"}
    assert case.record("n1")["status"] == "queued"


def test_cleanup_forgets_index_entries_past_retention(case: StoreCase) -> None:
    accept(case, "old", message=None, now=NOW - RETENTION - 5)
    accept(case, "old-sent", message=None, now=NOW - RETENTION - 1)
    case.redis.zrem(case.keys.status("queued"), "old-sent")
    case.redis.zadd(case.keys.status("sent"), {"old-sent": NOW - RETENTION - 1})
    accept(case, "new", message=None, now=NOW - 10)

    removed = case.run(lambda store: store.cleanup(now=NOW))

    # Two entries in P:all, one in each of the two status indexes.
    assert removed == 4
    assert case.index(None) == {"new": NOW - 10}
    assert case.index("queued") == {"new": NOW - 10}
    assert case.index("sent") == {}


# recovery


def test_find_stuck_marks_stale_pending_records_once(case: StoreCase) -> None:
    stale = 60.0
    accept(case, "stuck", message=None, now=NOW - 100)
    accept(case, "fresh", message=None, now=NOW - 10)
    accept(case, "scheduled", message=b"m", due=NOW + 5, now=NOW - 100)
    case.redis.hset(case.keys.record("scheduled"), "status", "queued")
    case.redis.zadd(case.keys.status("queued"), {"scheduled": NOW - 100})
    accept(case, "sending", message=None, now=NOW - 100)
    claim(case, "sending", now=NOW - 100)  # its lease ran out at NOW - 70

    queued = case.run(
        lambda store: store.find_stuck("queued", now=NOW, stale_after=stale, offset=0, count=10)
    )
    sending = case.run(
        lambda store: store.find_stuck("sending", now=NOW, stale_after=stale, offset=0, count=10)
    )

    # "fresh" is too young to be looked at; "scheduled" has a schedule entry.
    assert queued == (2, ["stuck"])
    assert sending == (1, ["sending"])
    assert case.record("stuck")["recovered_at"] == repr(NOW)
    assert "recovered_at" not in case.record("scheduled")

    again = case.run(
        lambda store: store.find_stuck("queued", now=NOW + 1, stale_after=stale, offset=0, count=10)
    )
    assert again == (2, [])


# failures and the rate limiter


def test_an_unreachable_redis_is_store_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        client = connect_redis(url, socket_connect_timeout=0.5)
        store = NotificationStore(client)
        limiter = RateLimiter(client, RateLimit(limit=1, period=1.0))
        try:
            with pytest.raises(StoreUnavailable):
                await store.get("n1")
            with pytest.raises(StoreUnavailable):
                await store.dispatch_due(now=NOW)
            with pytest.raises(StoreUnavailable):
                await limiter.hit("someone")
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_rate_limit_bucket_lives_under_its_key(case: StoreCase) -> None:
    async def scenario(store: NotificationStore) -> list[bool]:
        rate = RateLimit(limit=2, period=60.0)
        limiter = RateLimiter(store.redis, rate, prefix=store.keys.prefix)
        return [(await limiter.hit("key-a")).allowed for _ in range(3)]

    assert case.run(scenario) == [True, True, False]
    bucket = case.redis.hgetall(case.keys.rate_limit("key-a"))
    assert set(bucket) == {"tokens", "ts"}
    assert float(bucket["tokens"]) < 1


# Keys in KEYS

_SCRIPTS = {
    "accept": scripts.ACCEPT,
    "transition": scripts.TRANSITION,
    "create_and_claim": scripts.CREATE_AND_CLAIM,
    "dispatch_due": scripts.DISPATCH_DUE,
    "dispatch_confirm": scripts.DISPATCH_CONFIRM,
    "cleanup": scripts.CLEANUP,
    "find_stuck": scripts.FIND_STUCK,
    "rate_limit": scripts.RATE_LIMIT,
}


@pytest.mark.parametrize("name", sorted(_SCRIPTS))
def test_scripts_build_no_key_names(name: str) -> None:
    """Every key comes in KEYS: no string is concatenated, no command's key is an ARGV."""
    code = re.sub(r"--[^\n]*", "", _SCRIPTS[name])
    assert ".." not in code
    assert not re.search(r"redis\.call\('[A-Z]+', ARGV", code)
    assert not re.search(r"'[^']*:[^']*'", code)


# webhook events written with the record


def inbox(case: StoreCase) -> list[str]:
    """The webhook inbox, oldest first."""
    return [str(m) for m in reversed(case.redis.lrange(case.keys.webhook_inbox, 0, -1))]


def test_accept_queues_its_events_only_when_it_creates_the_record(case: StoreCase) -> None:
    def accept_with(notification_id: str, event: str, key: str | None = None) -> AcceptResult:
        return case.run(
            lambda store: store.accept(
                notification_id=notification_id,
                fields=FIELDS,
                message=b"msg",
                idempotency_key=key,
                idempotency_value=f"{notification_id}|x",
                now=NOW,
                events=[event],
            )
        )

    assert accept_with("n1", '{"e": 1}').created
    assert not accept_with("n1", '{"e": 2}').created  # a known id
    assert accept_with("n2", '{"e": 3}', key=case.keys.idempotency("k", "a")).created
    assert not accept_with("n3", '{"e": 4}', key=case.keys.idempotency("k", "a")).created

    assert inbox(case) == ['{"e": 1}', '{"e": 3}']


def test_accept_many_queues_each_created_items_events(case: StoreCase) -> None:
    accept(case, "old", message=None)
    items = [
        AcceptItem(notification_id="old", fields=FIELDS, events=('{"e": "old"}',)),
        AcceptItem(notification_id="new", fields=FIELDS, events=('{"e": "new"}',)),
    ]

    results = case.run(lambda store: store.accept_many(items, messages=[b"chunk"], now=NOW))

    assert [r.created for r in results] == [False, True]
    assert inbox(case) == ['{"e": "new"}']


def test_create_and_claim_queues_its_events_only_when_it_creates(case: StoreCase) -> None:
    def run(event: str, now: float) -> bool:
        return case.run(
            lambda store: store.create_and_claim(
                "n1", fields=FIELDS, lease_seconds=LEASE, now=now, events=[event]
            )
        )[1]

    assert run('{"e": 1}', NOW) is True
    assert run('{"e": 2}', NOW + LEASE + 1) is False  # an existing record, claimed again

    assert inbox(case) == ['{"e": 1}']


def test_transition_queues_its_events_only_when_it_is_made(case: StoreCase) -> None:
    create_and_claim(case, "n1")

    def transition(allowed: str, event: str) -> None:
        case.run(
            lambda store: store.transition(
                "n1", allowed=(allowed,), to="sent", now=NOW + 1, events=[event, event + "b"]
            )
        )

    with pytest.raises(InvalidTransition):
        transition("queued", "refused")
    transition("sending", "made")

    assert inbox(case) == ["made", "madeb"]
    assert case.record("n1")["status"] == "sent"

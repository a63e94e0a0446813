"""deliver() in-process against a real redis-server and a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest

from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import parse_request, sender_address, validate_notification
from notifier.delivery.deliver import DeliveryContext, deliver, deliver_request
from notifier.delivery.transport import SMTPTransport
from notifier.errors import PermanentDeliveryError, TransientDeliveryError
from notifier.intake import record_fields
from notifier.settings import Settings, load_settings
from notifier.storage.store import NotificationStore, connect_redis
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO

T = TypeVar("T")

ALICE = "alice@example.org"


@dataclass
class Harness:
    """Runs a scenario with a fresh store (own key prefix and queue) and SMTP connection."""

    settings: Settings
    redis_url: str
    smtp_port: int

    def run(
        self,
        scenario: Callable[[DeliveryContext], Awaitable[T]],
        *,
        transport: SMTPTransport | None = None,
    ) -> T:
        async def main() -> T:
            redis = connect_redis(self.redis_url)
            tag = uuid.uuid4().hex[:8]
            store = NotificationStore(redis, prefix=f"test-{tag}", queue=f"queue-{tag}")
            ctx = DeliveryContext(
                settings=self.settings,
                store=store,
                transport=transport or SMTPTransport.from_settings(self.settings),
                renderer=TemplateRenderer(self.settings.templates_dir),
                sender=sender_address(self.settings),
            )
            try:
                return await scenario(ctx)
            finally:
                await ctx.transport.close()
                await redis.aclose()

        return asyncio.run(main())


@pytest.fixture
def harness(redis_server: RedisServer, smtp: RecordingSMTPServer) -> Iterator[Harness]:
    settings = load_settings(
        REDIS_URL=redis_server.url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp.port,
        SMTP_SECURITY="none",
        MAIL_FROM="Notifier Tests <notifier@example.com>",
        TEMPLATES_DIR=str(REPO / "templates"),
        NOTIFIER_ENV="development",
        RETRY_BACKOFF_BASE=5.0,
        RETRY_BACKOFF_MAX=60.0,
        RETRY_MAX_ATTEMPTS=3,
    )
    yield Harness(settings=settings, redis_url=redis_server.url, smtp_port=smtp.port)


def _request(to: str = ALICE, **extra: Any) -> dict[str, Any]:
    return {"to": [to], "subject": "Hello", "text": "Hello there.", **extra}


async def _stored(ctx: DeliveryContext, request: dict[str, Any] | None = None) -> str:
    """A ``queued`` record, stored the way intake stores one (its message left out)."""
    notification = validate_notification(
        parse_request(request or _request()), settings=ctx.settings, renderer=ctx.renderer
    )
    notification_id = str(uuid.uuid4())
    await ctx.store.accept(
        notification_id=notification_id,
        fields=record_fields(notification, source="api"),
        message=None,
    )
    return notification_id


def _queued_tasks(raw_messages: list[bytes | str]) -> list[tuple[str, list[Any], int]]:
    """(task name, args, retries) of each task message on a queue."""
    found = []
    for raw in raw_messages:
        envelope = orjson.loads(raw)
        args, _kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
        found.append((envelope["headers"]["task"], args, envelope["headers"]["retries"]))
    return found


def test_sends_and_records_sent(harness: Harness, smtp: RecordingSMTPServer) -> None:
    async def scenario(ctx: DeliveryContext) -> None:
        notification_id = await _stored(ctx)
        outcome = await deliver(ctx, notification_id)
        assert outcome.status == "sent" and outcome.record_status == "sent"
        assert outcome.error is None
        record = await ctx.store.get(notification_id)
        assert record.status == "sent"
        assert record.delivered_to == (ALICE,)
        assert record.message_id == outcome.message_id
        assert record.attempt_count == 1
        assert [a.outcome for a in record.attempts] == ["sent"]
        assert record.sent_at is not None

    harness.run(scenario)
    [message] = smtp.messages
    assert message.rcpt_tos == (ALICE,)
    assert message.parsed()["Subject"] == "Hello"


def test_a_request_is_created_claimed_and_sent(harness: Harness, smtp: RecordingSMTPServer) -> None:
    notification_id = str(uuid.uuid4())

    async def scenario(ctx: DeliveryContext) -> None:
        outcome = await deliver_request(ctx, notification_id, _request(), source="celery")
        assert outcome.status == "sent"
        assert outcome.source == "celery" and outcome.to == (ALICE,)
        record = await ctx.store.get(notification_id)
        assert (record.status, record.source, record.attempt_count) == ("sent", "celery", 1)
        # The same message delivered again (a redelivery) sends nothing twice.
        again = await deliver_request(ctx, notification_id, _request(), source="celery")
        assert (again.status, again.record_status) == ("skipped", "sent")

    harness.run(scenario)
    assert len(smtp.messages_to(ALICE)) == 1


def test_an_invalid_request_is_recorded_failed_without_sending(
    harness: Harness, smtp: RecordingSMTPServer
) -> None:
    notification_id = str(uuid.uuid4())

    async def scenario(ctx: DeliveryContext) -> None:
        outcome = await deliver_request(
            ctx, notification_id, _request(to="not an address"), source="celery"
        )
        assert outcome.status == "failed"
        assert isinstance(outcome.error, PermanentDeliveryError)
        assert "to" in outcome.detail
        record = await ctx.store.get(notification_id)
        assert record.status == "failed"
        assert record.reason is not None and record.reason.startswith("invalid notification")

    harness.run(scenario)
    assert smtp.messages == []


def test_a_transient_reply_schedules_a_retry(harness: Harness, smtp: RecordingSMTPServer) -> None:
    smtp.fail(451, recipients=[ALICE])

    async def scenario(ctx: DeliveryContext) -> None:
        notification_id = await _stored(ctx)
        before = time.time()
        outcome = await deliver(ctx, notification_id)
        assert outcome.status == "retrying"
        assert isinstance(outcome.error, TransientDeliveryError)
        assert (outcome.error.code, outcome.error.recipient) == (451, ALICE)
        assert outcome.retry_in is not None and 0 < outcome.retry_in <= 60
        record = await ctx.store.get(notification_id)
        assert (record.status, record.error_code) == ("retrying", 451)
        assert [(a.outcome, a.code) for a in record.attempts] == [("transient", 451)]
        # On the schedule, not on the queue: nothing is due before the backoff ends.
        assert await ctx.store.queue_length() == 0
        assert await ctx.store.scheduled_count() == 1
        assert await ctx.store.dispatch_due(now=before) == 0
        due = before + outcome.retry_in + 1
        assert await ctx.store.dispatch_due(now=due) == 1
        queued = await ctx.store.redis.lrange(ctx.store.queue, 0, -1)
        assert _queued_tasks(queued) == [("notifier.deliver", [notification_id], 1)]

    harness.run(scenario)
    assert smtp.messages == []


def test_a_permanent_reply_fails_with_code_and_recipient(
    harness: Harness, smtp: RecordingSMTPServer
) -> None:
    smtp.fail(550, recipients=[ALICE])

    async def scenario(ctx: DeliveryContext) -> None:
        notification_id = await _stored(ctx)
        outcome = await deliver(ctx, notification_id)
        assert outcome.status == "failed" and outcome.record_status == "failed"
        assert isinstance(outcome.error, PermanentDeliveryError)
        assert (outcome.error.code, outcome.error.recipient) == (550, ALICE)
        record = await ctx.store.get(notification_id)
        assert (record.status, record.error_code) == ("failed", 550)
        assert [(a.outcome, a.code) for a in record.attempts] == [("permanent", 550)]
        assert await ctx.store.scheduled_count() == 0

    harness.run(scenario)
    assert smtp.messages == []


def test_the_last_attempt_gives_up_on_a_transient_reply(
    harness: Harness, smtp: RecordingSMTPServer
) -> None:
    smtp.fail(451, recipients=[ALICE])

    async def scenario(ctx: DeliveryContext) -> None:
        notification_id = await _stored(ctx)
        outcomes = []
        for _ in range(ctx.settings.retry_max_attempts):
            outcomes.append(await deliver(ctx, notification_id))
            record = await ctx.store.get(notification_id)
            if record.status == "retrying":
                # What the dispatcher does when the retry is due.
                assert await ctx.store.dispatch_due(now=time.time() + 3600) == 1
        assert [o.status for o in outcomes] == ["retrying", "retrying", "failed"]
        last = outcomes[-1]
        assert isinstance(last.error, TransientDeliveryError)
        assert (last.error.code, last.error.recipient) == (451, ALICE)
        assert str(last.error).startswith("gave up after 3 attempts")
        record = await ctx.store.get(notification_id)
        assert (record.status, record.attempt_count) == ("failed", 3)

    harness.run(scenario)


def test_a_sent_notification_is_skipped(harness: Harness, smtp: RecordingSMTPServer) -> None:
    async def scenario(ctx: DeliveryContext) -> None:
        notification_id = await _stored(ctx)
        assert (await deliver(ctx, notification_id)).status == "sent"
        again = await deliver(ctx, notification_id)
        assert (again.status, again.detail, again.record_status) == (
            "skipped",
            "already sent",
            "sent",
        )

    harness.run(scenario)
    assert len(smtp.messages) == 1


def test_a_busy_lease_defers_the_delivery(harness: Harness, smtp: RecordingSMTPServer) -> None:
    async def scenario(ctx: DeliveryContext) -> None:
        notification_id = await _stored(ctx)
        # Another delivery claimed it and holds the lease.
        before = time.time()
        held = await ctx.store.claim(notification_id, lease_seconds=300)
        assert held.outcome == "claimed"
        outcome = await deliver(ctx, notification_id)
        assert outcome.status == "deferred"
        record = await ctx.store.get(notification_id)
        assert (record.status, record.attempt_count) == ("sending", 1)
        # Looked at again when the lease ends, through the schedule.
        assert await ctx.store.scheduled_count() == 1
        assert await ctx.store.dispatch_due(now=before + 299) == 0
        assert await ctx.store.dispatch_due(now=time.time() + 301) == 1
        queued = await ctx.store.redis.lrange(ctx.store.queue, 0, -1)
        assert _queued_tasks(queued) == [("notifier.deliver", [notification_id], 0)]

    harness.run(scenario)
    assert smtp.messages == []


def test_an_unexpected_exception_surfaces_and_leaves_the_record_sending(
    harness: Harness, smtp: RecordingSMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Port 70000 makes the socket layer raise OverflowError: not an SMTP or network error,
    # so a bug of ours, which must not be recorded as a permanent failure.
    broken = SMTPTransport(hostname="127.0.0.1", port=70000, timeout=2.0, send_timeout=5.0)

    async def scenario(ctx: DeliveryContext) -> str:
        notification_id = await _stored(ctx)
        with pytest.raises(OverflowError):
            await deliver(ctx, notification_id)
        record = await ctx.store.get(notification_id)
        assert record.status == "sending"  # under its lease: recovery takes it from here
        assert record.attempts == ()
        assert record.error_code is None
        return notification_id

    notification_id = harness.run(scenario, transport=broken)
    assert any(r.levelname == "ERROR" and notification_id in r.getMessage() for r in caplog.records)
    assert smtp.messages == []

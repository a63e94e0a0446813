"""Delivery end to end: real Redis, a real worker and the recording SMTP server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from celery import Celery

from notifier.intake import requeue_notification
from notifier.storage.store import NotificationStore, connect_redis
from tests.support.records import read_record, wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

WELCOME = {
    "template": "welcome",
    "context": {"name": "Анна", "login_url": "https://example.com/login"},
}


def address() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def send(client: Celery, **kwargs: object) -> str:
    return str(client.send_task("notifier.send", kwargs=kwargs).id)


def test_welcome_in_russian_is_valid_multipart(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    notification_id = send(celery_client, to=to, locale="ru", **WELCOME)
    [received] = smtp.wait_for(1, to=to)
    message = received.parsed()

    assert message.defects == []
    assert all(part.defects == [] for part in message.walk())
    assert message.get_content_type() == "multipart/alternative"
    assert "Добро пожаловать" in str(message["Subject"])
    assert message["Message-ID"].startswith(f"<{notification_id}@")
    assert received.mail_from == "notifier@example.com"
    assert received.rcpt_tos == (to,)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "Анна" in text.get_content()
    html_content = html.get_content()
    assert "Анна" in html_content
    assert 'style="' in html_content and "<style" not in html_content

    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    assert record.template == "welcome" and record.locale == "ru"
    assert record.message_id == message["Message-ID"]
    assert record.smtp_reply is not None and record.smtp_reply.startswith("250")
    assert [a.outcome for a in record.attempts] == ["sent"]


def test_two_451_then_accept_sends_once_with_three_attempts(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    smtp.fail(451, recipients=[to], times=2)
    notification_id = send(celery_client, to=to, subject="Retry me", text="hello")
    record = wait_for_status(redis_server.url, notification_id, {"sent", "failed"})
    assert record.status == "sent"
    assert len(smtp.messages_to(to)) == 1
    assert [(a.outcome, a.code) for a in record.attempts] == [
        ("transient", 451),
        ("transient", 451),
        ("sent", 250),
    ]


def test_550_fails_at_once_and_requeue_sends(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    rule = smtp.fail(550, recipients=[to])
    notification_id = send(celery_client, to=to, subject="Refused", text="no")
    record = wait_for_status(redis_server.url, notification_id, {"failed"})
    assert record.error_code == 550
    assert [(a.outcome, a.code) for a in record.attempts] == [("permanent", 550)]
    assert smtp.messages_to(to) == []

    async def dead_letters_then_requeue() -> list[str]:
        redis = connect_redis(redis_server.url)
        store = NotificationStore(redis)
        try:
            page = await store.list(status="failed", limit=200)
            await requeue_notification(store, notification_id)
            return [r.id for r in page.records]
        finally:
            await redis.aclose()

    rule.remaining = 0  # the server accepts from now on
    assert notification_id in asyncio.run(dead_letters_then_requeue())
    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    assert len(smtp.wait_for(1, to=to)) == 1
    assert [a.outcome for a in record.attempts] == ["permanent", "sent"]


def test_missing_template_variable_fails_permanently_naming_it(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    notification_id = send(celery_client, to=to, template="password_reset", context={"name": "Ada"})
    record = wait_for_status(redis_server.url, notification_id, {"failed"})
    assert record.reason is not None and "reset_url" in record.reason
    assert smtp.messages_to(to) == []


def test_partial_refusal_delivers_to_the_rest(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    good, bad = address(), address()
    smtp.fail(550, recipients=[bad])
    notification_id = send(celery_client, to=[good, bad], subject="Partly", text="hi")
    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    [received] = smtp.wait_for(1, to=good)
    assert received.rcpt_tos == (good,)
    assert record.delivered_to == (good,)
    assert record.refused[bad]["code"] == 550


def test_bcc_is_in_envelope_not_headers(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to, hidden = address(), address()
    send(celery_client, to=to, bcc=[hidden], subject="Hidden", text="hi")
    [received] = smtp.wait_for(1, to=to)
    assert hidden in received.rcpt_tos
    assert hidden.encode() not in received.data


def test_invalid_request_is_recorded_as_failed(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    result = celery_client.send_task(
        "notifier.send", kwargs={"to": "not-an-address", "subject": "x", "text": "y"}
    )
    with pytest.raises(Exception, match="invalid notification: to"):
        result.get(timeout=20)
    assert result.state == "FAILURE"
    notification_id = str(result.id)
    record = wait_for_status(redis_server.url, notification_id, {"failed"})
    assert record.reason is not None and "to" in record.reason
    assert smtp.messages == []


def test_one_process_sends_200_over_its_bounded_connection_pool(
    make_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
) -> None:
    # A database of its own, so the session worker does not take a share of the burst.
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    env = {**worker_env, "REDIS_URL": url, "SMTP_CONNECTIONS_PER_PROCESS": "3"}
    make_worker(env, concurrency=1)
    client = Celery("burst", broker=url, backend=url)
    client.conf.update(task_serializer="json", accept_content=["json"])
    try:
        ids = [
            send(client, to=f"burst{i}@example.com", subject=f"#{i}", text="x") for i in range(200)
        ]
        smtp.wait_for(200, timeout=90)
    finally:
        client.close()
    # Connections are reused: at most the pool's size for 200 messages.
    assert 1 <= smtp.connections <= 3
    assert read_record(url, ids[-1]) is not None

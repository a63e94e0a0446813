"""A failed notification's error keeps its SMTP code and recipient through Celery's results."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import Celery

from notifier.errors import NotificationFailed, TransientDeliveryError
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess


def address() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def test_a_550_fails_the_task_with_code_and_recipient(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    smtp.fail(550, recipients=[to])
    result = celery_client.send_task(
        "notifier.send", kwargs={"to": [to], "subject": "Hi", "text": "hello"}
    )
    with pytest.raises(NotificationFailed) as failed:
        result.get(timeout=30)
    assert failed.value.code == 550
    assert failed.value.recipient == to
    assert str(failed.value).startswith("550")
    assert result.state == "FAILURE"
    record = wait_for_status(redis_server.url, str(result.id), {"failed"})
    assert record.error_code == 550


def test_an_invalid_request_fails_the_task_without_a_code(
    celery_client: Celery, worker: WorkerProcess, smtp: RecordingSMTPServer
) -> None:
    result = celery_client.send_task(
        "notifier.send", kwargs={"to": ["not an address"], "subject": "Hi", "text": "hello"}
    )
    with pytest.raises(NotificationFailed) as failed:
        result.get(timeout=30)
    assert failed.value.code is None and failed.value.recipient is None
    assert str(failed.value).startswith("invalid notification: to")


def test_a_451_shows_retry_then_fails_with_code_and_recipient(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
) -> None:
    to = address()
    # Every attempt is deferred: RETRY while attempts remain (RETRY_MAX_ATTEMPTS=5, backoff
    # 0.2 s to 1 s in the test worker), then FAILURE.
    smtp.fail(451, recipients=[to])
    result = celery_client.send_task(
        "notifier.send", kwargs={"to": [to], "subject": "Hi", "text": "hello"}
    )
    deadline = time.monotonic() + 30
    while result.state != "RETRY" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert result.state == "RETRY"
    error = result.result
    assert isinstance(error, TransientDeliveryError)
    assert (error.code, error.recipient) == (451, to)

    with pytest.raises(NotificationFailed) as failed:
        result.get(timeout=30)
    assert (failed.value.code, failed.value.recipient) == (451, to)
    assert str(failed.value).startswith("gave up after 5 attempts")

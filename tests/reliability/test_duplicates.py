"""The broker hands the same notifier.send message out twice: one email."""

from __future__ import annotations

import uuid

from celery import Celery

from tests.reliability.faults import (
    deliveries,
    plain_request,
    sentinel_then_drained,
    wait_terminal,
)
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess


def test_same_message_twice_sends_one_email(
    worker: WorkerProcess,
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
    celery_client: Celery,
) -> None:
    task_id = f"dup-{uuid.uuid4().hex}"
    request = plain_request(f"{task_id}@example.com")
    # Two messages with one task id, as a redelivery or a publisher's retry would produce;
    # the session worker has two processes, so both may run at the same moment.
    celery_client.send_task("notifier.send", kwargs=request, task_id=task_id)
    celery_client.send_task("notifier.send", kwargs=request, task_id=task_id)

    records = wait_terminal(redis_server.url, [task_id], timeout=30)
    assert records[task_id].status == "sent"
    smtp.wait_for(1, to=f"{task_id}@example.com", timeout=10)
    # Had the claim not stopped the second message, its email would precede the sentinel.
    sentinel_then_drained(redis_server.url, smtp)
    assert deliveries(smtp, [task_id])[task_id] == 1
    assert records[task_id].attempt_count == 1

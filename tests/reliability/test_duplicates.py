"""The broker hands the same notifier.send message out twice: one email, on the Redis broker
and on RabbitMQ."""

from __future__ import annotations

import uuid

from tests.reliability.conftest import Service
from tests.reliability.faults import (
    deliveries,
    plain_request,
    publisher,
    sentinel_then_drained,
    wait_terminal,
)
from tests.support.smtp_server import RecordingSMTPServer


def test_same_message_twice_sends_one_email(service: Service, smtp: RecordingSMTPServer) -> None:
    task_id = f"dup-{uuid.uuid4().hex}"
    request = plain_request(f"{task_id}@example.com")
    # Two messages with one task id, as a redelivery or a publisher's retry would produce;
    # the worker has two processes, so both may run at the same moment.
    client = publisher(service.redis_url, broker_url=service.broker_url)
    client.send_task("notifier.send", kwargs=request, task_id=task_id)
    client.send_task("notifier.send", kwargs=request, task_id=task_id)
    client.close()

    records = wait_terminal(service.redis_url, [task_id], timeout=30)
    assert records[task_id].status == "sent"
    smtp.wait_for(1, to=f"{task_id}@example.com", timeout=10)
    # Had the claim not stopped the second message, its email would precede the sentinel.
    sentinel_then_drained(
        service.redis_url, smtp, broker_url=service.broker_url, worker=service.worker
    )
    assert deliveries(smtp, [task_id])[task_id] == 1
    assert records[task_id].attempt_count == 1

"""NotifierClient end to end: publish, send and status against a real Redis, worker and SMTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.client import NotifierClient
from notifier.errors import NotifierError
from tests.reliability.faults import sentinel_then_drained
from tests.support.ports import free_port
from tests.support.records import read_record, wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess


def address() -> str:
    return f"client-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[NotifierClient]:
    with NotifierClient(redis_server.url) as client:
        yield client


def wait_for_state(
    client: NotifierClient, task_id: str, state: str, *, timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (status := client.status(task_id))["state"] != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} did not reach {state}: {status}")
        time.sleep(0.05)
    return status


def test_publish_routes_the_event_and_status_reports_its_notifications(
    client: NotifierClient,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    data = {"email": to, "name": "Client Ann", "login_url": "https://example.com/login"}
    event_id = f"signup-{uuid.uuid4().hex}"
    task_id = client.publish("user.registered", data, id=event_id, source="accounts")

    status = wait_for_state(client, task_id, "SUCCESS")
    result = status["result"]
    assert result["event_id"] == event_id
    assert result["duplicate"] is False
    [notification_id] = result["notification_ids"]
    [received] = smtp.wait_for(1, to=to)
    assert "Client Ann" in str(received.parsed()["Subject"])
    wait_for_status(redis_server.url, notification_id, {"sent"})

    # A publisher's retry with the same id: the same task id, nothing sent again. (The result
    # backend keeps the first SUCCESS; the repeat has run once the queue and unacked drain.)
    assert client.publish("user.registered", data, id=event_id, source="accounts") == task_id
    sentinel_then_drained(redis_server.url, smtp)
    assert client.status(task_id)["result"]["notification_ids"] == [notification_id]
    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    assert record.attempt_count == 1
    assert [m for m in smtp.messages if to in m.rcpt_tos] == [received]


def test_publish_without_id_puts_a_generated_one_in_the_envelope(
    client: NotifierClient, worker: WorkerProcess, smtp: RecordingSMTPServer
) -> None:
    to = address()
    data = {"email": to, "name": "Bo", "login_url": "https://example.com/login"}
    first = client.publish("user.registered", data, subject="user/7")
    second = client.publish("user.registered", data, subject="user/7")
    assert first != second
    one = wait_for_state(client, first, "SUCCESS")["result"]
    two = wait_for_state(client, second, "SUCCESS")["result"]
    assert uuid.UUID(one["event_id"]).version == 4
    assert one["event_id"] != two["event_id"]
    assert two["duplicate"] is False
    smtp.wait_for(2, to=to)


def test_send_returns_the_notification_id_and_status_reads_its_result(
    client: NotifierClient,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    notification_id = client.send(
        to,
        "welcome",
        {"name": "Ann", "login_url": "https://example.com/login"},
        locale="ru",
        metadata={"order": "17"},
        attachments=[{"filename": "a.txt", "content_type": "text/plain", "content": b"hi"}],
    )
    [received] = smtp.wait_for(1, to=to)
    message = received.parsed()
    assert message["Message-ID"].startswith(f"<{notification_id}@")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content() == "hi"
    status = wait_for_state(client, notification_id, "SUCCESS")
    assert status["result"]["id"] == notification_id
    assert status["result"]["status"] == "sent"
    record = read_record(redis_server.url, notification_id)
    assert record is not None and record.metadata == {"order": "17"}


def test_send_with_an_id_and_send_at_is_scheduled_then_sent(
    client: NotifierClient,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    chosen = str(uuid.uuid4())
    notification_id = client.send(
        [to],
        subject="Later",
        text="Scheduled body",
        send_at=datetime.now(UTC) + timedelta(seconds=2),
        id=chosen,
    )
    assert notification_id == chosen
    wait_for_status(redis_server.url, notification_id, {"scheduled"})
    wait_for_status(redis_server.url, notification_id, {"sent"})
    [received] = smtp.wait_for(1, to=to)
    assert received.parsed()["Subject"] == "Later"


def test_send_with_a_bad_request_reports_the_failed_notification(
    client: NotifierClient,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    notification_id = client.send(address(), "password_reset", {"name": "No reset url"})
    # The worker records the refusal and the task fails with the reason.
    status = wait_for_state(client, notification_id, "FAILURE")
    assert "reset_url" in status["error"]
    record = read_record(redis_server.url, notification_id)
    assert record is not None and record.status == "failed"
    assert record.reason is not None and "reset_url" in record.reason
    assert smtp.messages == []


def test_status_of_an_unknown_id_is_pending(client: NotifierClient) -> None:
    unknown = str(uuid.uuid4())
    assert client.status(unknown) == {"id": unknown, "state": "PENDING"}


def test_client_refuses_bad_arguments(client: NotifierClient) -> None:
    with pytest.raises(ValueError, match="to must"):
        client.send([], "welcome")
    with pytest.raises(ValueError, match="timezone-aware"):
        client.send("a@example.com", subject="s", text="t", send_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="type"):
        client.publish("", {})


def test_status_through_an_unreachable_api_raises_a_notifier_error(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    client = NotifierClient(redis_server.url, api_url=f"http://127.0.0.1:{port}/")
    with client, pytest.raises(NotifierError, match=f"127.0.0.1:{port}/api/v1/notifications/abc"):
        client.status("abc")

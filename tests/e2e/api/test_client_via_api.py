"""NotifierClient.status(id) through the HTTP API: the full record, or NotificationNotFound."""

from __future__ import annotations

import time
import uuid

import pytest

from notifier.client import NotifierClient
from notifier.errors import NotificationNotFound
from tests.support.api_server import API_KEY, ApiServer
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess


def test_status_reads_the_record_from_the_api(
    api_server: ApiServer,
    redis_server: RedisServer,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
) -> None:
    to = f"api-client-{uuid.uuid4().hex[:8]}@example.com"
    with NotifierClient(redis_server.url, api_url=api_server.url, api_key=API_KEY) as client:
        notification_id = client.send(to, "welcome", {"name": "Ada"})
        smtp.wait_for(1, to=to)
        deadline = time.monotonic() + 20
        while (record := client.status(notification_id))["status"] != "sent":
            assert time.monotonic() < deadline, record
            time.sleep(0.05)
        assert record["id"] == notification_id
        assert record["template"] == "welcome"
        assert record["attempts"][0]["code"] == 250
        with pytest.raises(NotificationNotFound):
            client.status(str(uuid.uuid4()))

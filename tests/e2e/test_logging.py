"""Structured logs from a real worker: JSON lines carrying the notification, no clear addresses."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery

from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

WELCOME = {"template": "welcome", "context": {"name": "Anna", "login_url": "https://x.test/in"}}


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def wait_for_log(worker: WorkerProcess, needle: str, *, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in (text := worker.log_text()):
        assert time.monotonic() < deadline, f"{needle!r} not logged:\n{text[-2000:]}"
        time.sleep(0.05)
    return text


def test_json_logs_carry_the_notification_and_mask_addresses(
    worker_env: dict[str, str],
    make_worker: Callable[..., WorkerProcess],
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
) -> None:
    redis_url = redis_server.private_db(8)
    worker = make_worker(
        {
            **worker_env,
            "REDIS_URL": redis_url,
            "LOG_FORMAT": "json",
            "SMTP_PASSWORD": "hunter2-secret",
            # Celery's own per-task lines too: they must carry the id and mask addresses.
            "LOG_CELERY_TASKS": "true",
        },
        concurrency=2,
    )
    client = Celery("logging_client", broker=redis_url, backend=redis_url)
    client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    tag = uuid.uuid4().hex[:8]
    ok, bad, flaky = (f"{kind}-{tag}@example.com" for kind in ("ok", "bad", "flaky"))
    smtp.fail(550, recipients=[bad])
    smtp.fail(451, recipients=[flaky], times=1)
    try:
        ids = {
            to: str(client.send_task("notifier.send", kwargs={"to": to, **WELCOME}).id)
            for to in (ok, bad, flaky)
        }
        for nid in ids.values():
            wait_for_status(redis_url, nid, {"sent", "failed"})
    finally:
        client.close()
    text = wait_for_log(worker, f"{ids[flaky]}] succeeded")

    records = json_lines(text)
    assert any(r["message"].endswith(" ready.") for r in records)
    for nid in ids.values():
        about = [r for r in records if nid in json.dumps(r)]
        # received, our own lines, succeeded/failed; at least three per notification.
        assert len(about) >= 3, about
        assert all(r["notification_id"] == nid for r in about), about
        assert all({"time", "level", "logger", "message"} <= r.keys() for r in about)
    # Lines from inside delivery also carry template and attempt.
    retry_line = next(r for r in records if "retrying in" in r["message"])
    assert retry_line["notification_id"] == ids[flaky]
    assert retry_line["template"] == "welcome"
    assert retry_line["attempt"] == 1
    failed_line = next(r for r in records if "failed for good" in r["message"])
    assert failed_line["notification_id"] == ids[bad]
    assert failed_line["level"] == "ERROR"

    # No address in clear anywhere in the worker's output, no secret; masked ones are there.
    for address in (ok, bad, flaky):
        assert address not in text
    assert "hunter2-secret" not in text
    assert "o***@example.com" in text


def test_text_logs_are_readable_by_default(
    worker: WorkerProcess,
    celery_client: Celery,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = f"text-{uuid.uuid4().hex[:8]}@example.com"
    nid = str(celery_client.send_task("notifier.send", kwargs={"to": to, **WELCOME}).id)
    wait_for_status(redis_server.url, nid, {"sent"})
    text = wait_for_log(worker, f"notification {nid} sent")
    ours = [line for line in text.splitlines() if f"notification {nid} sent" in line]
    assert len(ours) == 1
    assert not ours[0].startswith("{")
    assert f"[notification={nid} template=welcome attempt=1]" in ours[0]
    assert to not in text

"""Events end to end: the ``notifier.event`` task, routing rules at start-up, ignored types."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from notifier.compose.rendering import TemplateRenderer
from notifier.events import EventResult, handle_event, parse_event, parse_rules
from notifier.settings import load_settings
from notifier.storage.keys import Keys
from notifier.storage.store import NotificationStore, connect_redis
from tests.support.records import read_record, wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO, WorkerProcess

TEMPLATES = REPO / "templates"

# Makes any import of the service's heavy dependencies fail, so the code that runs after it
# proves it needs nothing but celery (and its Redis transport).
IMPORT_BLOCKER = textwrap.dedent(
    """
    import sys

    BLOCKED = {"pydantic", "pydantic_core", "pydantic_settings", "jinja2", "aiosmtplib",
               "fastapi", "orjson", "css_inline"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: a publisher has only celery")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def address() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def welcome_data(email: str, name: str = "Ann") -> dict[str, str]:
    return {"email": email, "name": name}


def publish(client: Celery, envelope: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = client.send_task("notifier.event", args=[envelope]).get(timeout=20)
    return result


def run_publisher(code: str, *, redis_url: str) -> str:
    """Run ``code`` in a fresh interpreter where only celery can be imported, not the service."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_BLOCKER + textwrap.dedent(code)],
        cwd=REPO,
        env={"REDIS_URL": redis_url, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_for_log(worker: WorkerProcess, text: str, *, timeout: float = 10.0) -> str:
    """The worker's log once it contains ``text`` (the pool logs after storing the result)."""
    deadline = time.monotonic() + timeout
    while text not in (log := worker.log_text()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the worker log:\n{log[-3000:]}")
        time.sleep(0.05)
    return log


def ignored_count(redis_url: str, event_type: str) -> int:
    async def read() -> int:
        redis = connect_redis(redis_url)
        try:
            value = await redis.hget(Keys().events_ignored, event_type)
        finally:
            await redis.aclose()
        return int(value or 0)

    return asyncio.run(read())


def test_publisher_with_only_celery_gets_the_welcome_email(
    redis_server: RedisServer, worker: WorkerProcess, smtp: RecordingSMTPServer
) -> None:
    to = address()
    out = run_publisher(
        f"""
        import os, json, uuid
        from celery import Celery

        app = Celery("publisher", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
        envelope = {{
            "specversion": "1.0",
            "type": "user.registered",
            "source": "accounts",
            "id": str(uuid.uuid4()),
            "data": {{"email": {to!r}, "name": "Ann Publisher"}},
        }}
        result = app.send_task("notifier.event", args=[envelope]).get(timeout=20)
        assert "pydantic" not in sys.modules and "jinja2" not in sys.modules
        print(json.dumps(result))
        """,
        redis_url=redis_server.url,
    )
    import json

    answer = json.loads(out)
    assert answer["duplicate"] is False and answer["ignored"] is False
    assert answer["failures"] == []
    [notification_id] = answer["notification_ids"]

    [received] = smtp.wait_for(1, to=to)
    message = received.parsed()
    assert received.rcpt_tos == (to,)
    assert message["To"] == to
    assert "Ann Publisher" in str(message["Subject"])
    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    assert record.source == "event"
    assert record.template == "welcome"
    assert record.event_id == answer["event_id"]
    assert record.metadata == {
        "event_type": "user.registered",
        "rule": "welcome-email",
        "event_id": answer["event_id"],
    }


def test_event_as_keyword_and_as_json_text(
    celery_client: Celery, worker: WorkerProcess, smtp: RecordingSMTPServer
) -> None:
    import json

    first, second = address(), address()
    by_keyword = celery_client.send_task(
        "notifier.event",
        kwargs={"event": {"type": "user.registered", "data": welcome_data(first)}},
    ).get(timeout=20)
    as_text = celery_client.send_task(
        "notifier.event",
        args=[json.dumps({"type": "user.registered", "data": welcome_data(second)})],
    ).get(timeout=20)
    assert len(by_keyword["notification_ids"]) == 1
    assert len(as_text["notification_ids"]) == 1
    smtp.wait_for(1, to=first)
    smtp.wait_for(1, to=second)


def test_same_event_published_twice_delivers_one_email(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    envelope = {
        "type": "user.registered",
        "source": "accounts",
        "id": f"evt-{uuid.uuid4().hex}",
        "data": welcome_data(to),
    }
    first = publish(celery_client, envelope)
    second = publish(celery_client, envelope)
    assert first["duplicate"] is False
    assert second["duplicate"] is True
    assert second["notification_ids"] == first["notification_ids"]
    [notification_id] = first["notification_ids"]
    wait_for_status(redis_server.url, notification_id, {"sent"})
    assert len(smtp.wait_for(1, to=to)) == 1

    # The same id from another source is another event.
    other_to = address()
    other = publish(
        celery_client, {**envelope, "source": "billing", "data": welcome_data(other_to)}
    )
    assert other["duplicate"] is False
    assert other["notification_ids"] != first["notification_ids"]
    wait_for_status(redis_server.url, other["notification_ids"][0], {"sent"})
    assert [m.rcpt_tos for m in smtp.messages] == [(to,), (other_to,)]


def test_redelivered_event_without_stored_result_still_sends_once(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    """A worker that died after accepting but before remembering the event: ids are stable."""
    to = address()
    envelope = {
        "type": "user.registered",
        "source": "accounts",
        "id": f"evt-{uuid.uuid4().hex}",
        "data": welcome_data(to),
    }
    first = publish(celery_client, envelope)
    [notification_id] = first["notification_ids"]
    wait_for_status(redis_server.url, notification_id, {"sent"})

    dedup_key = f"{len('accounts')}:accounts:{envelope['id']}"
    with redis_server.client() as redis:
        assert redis.delete(Keys().event_result(dedup_key)) == 1

    again = publish(celery_client, envelope)
    assert again["notification_ids"] == [notification_id]
    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    assert record.attempt_count == 1
    assert len(smtp.messages) == 1


def test_unknown_type_is_ignored_counted_and_not_retried(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    event_type = f"order.shipped.{uuid.uuid4().hex[:6]}"
    before = ignored_count(redis_server.url, event_type)
    async_result = celery_client.send_task(
        "notifier.event", args=[{"type": event_type, "data": {"email": address()}}]
    )
    answer = async_result.get(timeout=20)
    assert answer == {
        "event_id": None,
        "notification_ids": [],
        "duplicate": False,
        "ignored": True,
        "failures": [],
    }
    assert async_result.state == "SUCCESS"
    assert ignored_count(redis_server.url, event_type) == before + 1
    publish(celery_client, {"type": event_type, "data": {}})
    assert ignored_count(redis_server.url, event_type) == before + 2
    # Logged once per type per worker process, however many arrive.
    assert worker.log_text().count(f"ignoring events of type {event_type!r}") <= 2
    assert smtp.messages == []


def test_event_without_email_fails_its_notification_naming_the_field(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    answer = publish(
        celery_client,
        {"type": "user.registered", "id": uuid.uuid4().hex, "data": {"name": "No Mail"}},
    )
    [failure] = answer["failures"]
    assert failure["field"] == "data.email"
    assert failure["rule"] == "welcome-email"
    [notification_id] = answer["notification_ids"]
    record = read_record(redis_server.url, notification_id)
    assert record is not None
    assert record.status == "failed"
    assert record.reason is not None and "data.email" in record.reason
    assert record.event_id == answer["event_id"]
    assert record.attempt_count == 0
    assert smtp.messages == []


def test_event_missing_a_template_variable_fails_naming_it(
    celery_client: Celery,
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    answer = publish(
        celery_client,
        {"type": "user.password_reset_requested", "data": {"email": to, "name": "Ann"}},
    )
    [failure] = answer["failures"]
    assert failure["field"] == "data.reset_url"
    record = read_record(redis_server.url, answer["notification_ids"][0])
    assert record is not None and record.status == "failed"
    assert record.reason is not None and "reset_url" in record.reason
    assert record.to == (to,)

    bad = publish(
        celery_client,
        {"type": "user.registered", "data": welcome_data("not@@valid")},
    )
    [failure] = bad["failures"]
    assert failure["field"].startswith("to")
    assert smtp.messages == []


def test_invalid_envelope_fails_the_task_for_good_naming_the_field(
    celery_client: Celery, worker: WorkerProcess
) -> None:
    async_result = celery_client.send_task("notifier.event", args=[{"type": "user.registered"}])
    with pytest.raises(Exception, match="data: field required") as info:
        async_result.get(timeout=20)
    assert type(info.value).__name__ == "InvalidEvent"
    assert async_result.state == "FAILURE"
    # Listed in the task's ``throws``: one warning naming the field, no traceback. (Celery's
    # own "raised expected" line is an INFO line LOG_CELERY_TASKS turns off by default.)
    log = wait_for_log(worker, "event refused: data: field required")
    refused = [line for line in log.splitlines() if "event refused: data: field required" in line]
    assert all("WARNING" in line for line in refused)
    assert "Traceback" not in log.split("event refused: data: field required", 1)[1][:200]

    bad_time = celery_client.send_task(
        "notifier.event", args=[{"type": "a.b", "data": {}, "time": "yesterday"}]
    )
    with pytest.raises(Exception, match="time"):
        bad_time.get(timeout=20)


def test_delayed_rule_schedules_then_sends(
    worker: WorkerProcess, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    """handle_event as the API calls it, with a rule that delays; the worker sends when due."""
    settings = load_settings(redis_url=redis_server.url, templates_dir=TEMPLATES)
    renderer = TemplateRenderer(TEMPLATES)
    rules = parse_rules(
        """
        [[rule]]
        event = "trial.started"
        name = "trial-welcome"
        template = "welcome"
        to = "data.email"
        delay = "1s"
        context = { login_url = "https://example.com/login" }
        """,
        known_templates=renderer.template_names(),
    )
    to = address()
    envelope = parse_event({"type": "trial.started", "data": {"email": to, "name": "Ann"}})

    async def run() -> EventResult:
        redis = connect_redis(redis_server.url)
        try:
            store = NotificationStore(redis)
            return await handle_event(
                envelope, store=store, renderer=renderer, rules=rules, settings=settings
            )
        finally:
            await redis.aclose()

    result = asyncio.run(run())
    [notification_id] = result.notification_ids
    record = read_record(redis_server.url, notification_id)
    assert record is not None
    assert record.status == "scheduled"
    assert record.send_at is not None and record.send_at > record.created_at
    wait_for_status(redis_server.url, notification_id, {"sent"})
    [received] = smtp.wait_for(1, to=to)
    assert received.rcpt_tos == (to,)


def test_rule_with_unknown_template_stops_worker_start_up(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    rules_file = tmp_path / "events.toml"
    rules_file.write_text(
        '[[rule]]\nevent = "user.registered"\nname = "greet"\ntemplate = "welcom"\n'
        'to = "data.email"\n'
    )
    process = WorkerProcess(
        env={**worker_env, "EVENTS_FILE": str(rules_file)}, log_path=tmp_path / "worker.log"
    )
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            process.start()
    finally:
        process.kill()
    assert process.process is not None and process.process.returncode not in (0, None)
    log = process.log_text()
    assert "cannot start the worker" in log
    assert str(rules_file) in log
    assert "rule 'greet'" in log
    assert "unknown template 'welcom'" in log

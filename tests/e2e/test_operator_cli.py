"""The operator CLI against the real Redis and the session worker, run as a subprocess."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.ports import free_port
from tests.support.records import read_record, wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

WELCOME_CONTEXT = '{"name": "Анна", "login_url": "https://example.com/login"}'


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return run_cli(clean, *args)


def address(kind: str = "cli") -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}@example.com"


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_send_delivers_and_prints_the_id(
    worker_env: dict[str, str],
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    to = address()
    result = cli(
        worker_env, "send", "--to", to, "--template", "welcome", "--context", WELCOME_CONTEXT,
        "--locale", "ru",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notification_id = result.stdout.strip()
    uuid.UUID(notification_id)
    [received] = smtp.wait_for(1, to=to)
    plain = received.parsed().get_body(("plain",))
    assert plain is not None and "Анна" in plain.get_content()
    record = wait_for_status(redis_server.url, notification_id, {"sent"})
    assert record.source == "cli" and record.locale == "ru"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--template", "welcome", "--context", "{not json"], ["--context", "not valid JSON"]),
        (["--template", "welcome", "--context", "[1, 2]"], ["--context", "JSON object"]),
        (["--template", "no_such_template", "--context", "{}"], ["no_such_template"]),
        (["--template", "welcome", "--context", '{"login_url": "https://x"}'], ["'name'"]),
    ],
)
def test_send_refuses_bad_input_in_one_line(
    worker_env: dict[str, str], redis_server: RedisServer, args: list[str], needles: list[str]
) -> None:
    result = cli(worker_env, "send", "--to", address(), *args)
    assert_one_line_error(result, *needles)


def test_send_refuses_a_bad_address(worker_env: dict[str, str], redis_server: RedisServer) -> None:
    result = cli(
        worker_env, "send", "--to", "not-an-address", "--template", "welcome",
        "--context", WELCOME_CONTEXT,
    )  # fmt: skip
    assert_one_line_error(result, "to")


def test_redis_down_is_one_line(worker_env: dict[str, str]) -> None:
    env = {**worker_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for args in (["status"], ["failed"], ["retry", "--all-failed"]):
        assert_one_line_error(cli(env, *args), "Redis")


def test_failed_lists_dead_letters_masked_and_retry_requeues_them(
    worker_env: dict[str, str],
    make_worker: Callable[..., WorkerProcess],
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    # A database of its own: `retry --all-failed` must not requeue other tests' dead letters.
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    worker_env = {**worker_env, "REDIS_URL": url}
    make_worker(worker_env)
    first, second = address("dead"), address("dead")
    smtp.fail(550, recipients=[first, second], times=2)
    ids = []
    for to in (first, second):
        result = cli(
            worker_env, "send", "--to", to, "--template", "welcome", "--context", WELCOME_CONTEXT
        )
        assert result.returncode == 0, result.stderr
        ids.append(result.stdout.strip())
    for notification_id in ids:
        wait_for_status(url, notification_id, {"failed"})

    listing = cli(worker_env, "failed", "--limit", "50")
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    for notification_id, to in zip(ids, (first, second), strict=True):
        line = lines[notification_id]
        assert "welcome" in line and "550" in line and "UTC" in line
        assert to not in line and "d***@example.com" in line

    # One by one: the first comes back and is delivered (the server now accepts it).
    result = cli(worker_env, "retry", ids[0])
    assert result.returncode == 0 and result.stdout.strip() == f"requeued {ids[0]}"
    assert wait_for_status(url, ids[0], {"sent"}).status == "sent"
    assert_one_line_error(cli(worker_env, "retry", ids[0]), "is sent", "only failed")
    assert_one_line_error(cli(worker_env, "retry", str(uuid.uuid4())), "no notification")

    # All at once: every dead letter, this test's second one included.
    result = cli(worker_env, "retry", "--all-failed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("requeued ")
    assert wait_for_status(url, ids[1], {"sent"}).status == "sent"
    record = read_record(url, ids[1])
    assert record is not None and len(smtp.messages_to(second)) == 1
    assert cli(worker_env, "failed").stdout.strip() == "no failed notifications"


def test_retry_needs_an_id_or_all_failed(worker_env: dict[str, str]) -> None:
    assert_one_line_error(cli(worker_env, "retry"), "--all-failed")
    assert_one_line_error(cli(worker_env, "retry", "x", "--all-failed"), "not both")


def test_status_shows_queue_workers_and_counts(
    worker_env: dict[str, str],
    worker: WorkerProcess,
    smtp: RecordingSMTPServer,
    redis_server: RedisServer,
) -> None:
    result = cli(worker_env, "send", "--to", address(), "--template", "welcome",
                 "--context", WELCOME_CONTEXT)  # fmt: skip
    wait_for_status(redis_server.url, result.stdout.strip(), {"sent"})
    status = cli(worker_env, "status", "--timeout", "2")
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(":", 1) for line in status.stdout.splitlines())
    assert lines["queue depth"].strip().isdigit()
    assert lines["scheduled"].strip().isdigit()
    assert "1 alive" in lines["workers"] and worker.name.split("@")[0] in lines["workers"]
    counts = dict(pair.split("=") for pair in lines["notifications"].split())
    assert set(counts) == {
        "queued", "scheduled", "sending", "retrying", "sent", "failed", "cancelled", "suppressed",
    }  # fmt: skip
    assert int(counts["sent"]) >= 1


def test_status_says_when_no_worker_answers(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> None:
    # A database no worker consumes: the ping goes out on its own broadcast exchange.
    env = {**worker_env, "REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/9"}
    status = cli(env, "status", "--timeout", "0.5")
    assert status.returncode == 0, status.stderr
    assert "none answered within 0.5s" in status.stdout


def test_render_prints_subject_and_text_and_writes_html(worker_env: dict[str, str]) -> None:
    result = cli(
        worker_env, "render", "welcome", "--context", WELCOME_CONTEXT, "--locale", "ru-RU", "--open"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Subject: ") and "Добро пожаловать" in lines[0]
    assert lines[1] == "Locale:  ru"
    assert "Анна" in result.stdout
    html_path = Path(lines[-1].removeprefix("HTML preview: "))
    try:
        html = html_path.read_text(encoding="utf-8")
        assert "Анна" in html and "<html" in html.lower()
    finally:
        html_path.unlink()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["welcome", "--context", "nope"], ["--context"]),
        (["nope_template"], ["nope_template"]),
        (["password_reset", "--context", '{"name": "A"}'], ["'reset_url'"]),
    ],
)
def test_render_bad_input_is_one_line(
    worker_env: dict[str, str], args: list[str], needles: list[str]
) -> None:
    assert_one_line_error(cli(worker_env, "render", *args), *needles)

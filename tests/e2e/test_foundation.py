"""The foundation: the seed's publisher, the health task, the CLI, start-up checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from tests.support.cli import run_cli
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO, WorkerProcess, service_env

SEED_DIR = REPO / "tests" / "seed"


def run_seed_client(redis_url: str, code: str) -> str:
    """Run ``code`` in a process that has only the seed's celery_client.py on its path."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=SEED_DIR,
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_seed_publisher_gets_add_numbers_result(
    redis_server: RedisServer, worker: WorkerProcess
) -> None:
    out = run_seed_client(
        redis_server.url,
        "from celery_client import call_add_numbers; print(call_add_numbers(2, 3).get(timeout=10))",
    )
    assert out == "5"


def test_seed_send_email_delivers_and_returns_seed_result(
    redis_server: RedisServer, worker: WorkerProcess, smtp: RecordingSMTPServer
) -> None:
    out = run_seed_client(
        redis_server.url,
        "import json; from celery_client import call_send_email;"
        "r = call_send_email('seed@example.com', 'Привет', 'Line one\\nLine two');"
        "print(json.dumps(r.get(timeout=20)))",
    )
    assert json.loads(out) == {"status": "success", "email": "seed@example.com"}
    [message] = smtp.wait_for(1, to="seed@example.com")
    parsed = message.parsed()
    assert parsed["Subject"] == "Привет"
    text = parsed.get_body(("plain",))
    assert text is not None
    assert "Line one\nLine two" in text.get_content().replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["2", 3], "x must be a number"), ([2], "missing"), ([True, 1], "x must be a number")],
)
def test_add_numbers_rejects_bad_arguments(
    celery_client: Celery, worker: WorkerProcess, args: list[object], expected: str
) -> None:
    result = celery_client.send_task("add_numbers", args=args)
    with pytest.raises(Exception) as info:
        result.get(timeout=10)
    assert expected in str(info.value)
    assert result.state == "FAILURE"


def test_add_numbers_adds(celery_client: Celery, worker: WorkerProcess) -> None:
    assert celery_client.send_task("add_numbers", args=[40, 2]).get(timeout=10) == 42


def test_health_ok_with_worker(worker_env: dict[str, str], worker: WorkerProcess) -> None:
    result = run_cli(worker_env, "health", "--timeout", "10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: add_numbers(2, 3) = 5 in ")


def test_health_fails_clearly_without_redis(worker_env: dict[str, str]) -> None:
    from tests.support.ports import free_port

    env = {**worker_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = run_cli(env, "health", "--timeout", "2")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], result.stderr


def test_health_fails_clearly_without_worker(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    lonely = RedisServer(tmp_path / "redis")
    lonely.start()
    try:
        env = service_env(redis_url=lonely.url, smtp_port=smtp_server.port)
        result = run_cli(env, "health", "--timeout", "2")
    finally:
        lonely.kill()
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no worker answered within 2s" in lines[0], result.stderr


def test_inspect_registered_lists_tasks(worker_env: dict[str, str], worker: WorkerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "notifier", "inspect", "registered", "-t", "5"],
        cwd=REPO,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in ("add_numbers", "send_email_task", "notifier.send", "notifier.deliver"):
        assert name in result.stdout


def test_worker_refuses_to_start_with_missing_templates(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**worker_env, "TEMPLATES_DIR": str(tmp_path / "nowhere")}
    result = run_cli(env, "worker")
    assert result.returncode == 2
    assert "TEMPLATES_DIR" in result.stderr and "nowhere" in result.stderr


def test_worker_refuses_unsafe_visibility_timeout(worker_env: dict[str, str]) -> None:
    env = {**worker_env, "BROKER_VISIBILITY_TIMEOUT": "10", "RETRY_BACKOFF_MAX": "30"}
    result = run_cli(env, "worker")
    assert result.returncode == 2
    assert "BROKER_VISIBILITY_TIMEOUT (10s)" in result.stderr

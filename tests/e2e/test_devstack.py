"""`notifier dev` (what `make dev` runs): the whole stack on one machine, then Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.worker import REPO


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True, check=False
        )
        children = {int(p) for p in out.stdout.split()}
        pending.extend(children - found)
        found |= children
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.slow
def test_dev_stack_delivers_to_the_inbox_and_stops_cleanly(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing (make test installs it)")
    api_port, smtp_port, inbox_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SMTP_", "API_"))}
    env.update(PYTHONPATH=str(REPO), TEMPLATES_DIR=str(REPO / "templates"), API_KEYS="dev-key")
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        stack = subprocess.Popen(
            [
                sys.executable, "-m", "notifier.cli", "dev",
                "--api-port", str(api_port),
                "--smtp-port", str(smtp_port),
                "--inbox-port", str(inbox_port),
                "--data-dir", str(tmp_path / "data"),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "notifier is running" not in log_path.read_text():
            assert stack.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        output = log_path.read_text()
        assert f"http://127.0.0.1:{api_port}/docs" in output
        assert f"http://127.0.0.1:{inbox_port}" in output
        curl = re.search(r"curl -s -X POST .*", output)
        assert curl is not None and "Authorization: Bearer dev-key" in curl.group(0)

        # What the printed curl command sends, sent with httpx.
        response = httpx.post(
            f"http://127.0.0.1:{api_port}/api/v1/notifications",
            headers={"Authorization": "Bearer dev-key"},
            json={
                "to": "ada@example.com",
                "template": "welcome",
                "context": {"name": "Ada", "login_url": "https://example.com/login"},
            },
            timeout=10,
        )
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 30
        while True:
            inbox = httpx.get(f"http://127.0.0.1:{inbox_port}/api/v2/messages", timeout=5).json()
            if inbox["total"] >= 1:
                break
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        item = inbox["items"][0]
        assert item["To"][0]["Mailbox"] == "ada" and item["To"][0]["Domain"] == "example.com"
        assert any("Welcome" in s for s in item["Content"]["Headers"]["Subject"])
        processes = descendants(stack.pid)
        assert len(processes) >= 4  # redis, inbox, worker (+ pool), api
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(60)
    assert stack.returncode == 0, log_path.read_text()[-3000:]
    # The stack waited for its children, so they are gone or about to be reaped by init.
    deadline = time.monotonic() + 10
    left = [pid for pid in processes if alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in processes if alive(pid)]
    assert left == [], f"processes left behind: {left}"

"""`notifier dev` runs the bounce receiver, and the dev inbox answers the simulator's addresses
with real reports: a mail to bounce@simulator.example.com ends with the address suppressed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import run_cli
from tests.support.ports import free_port
from tests.support.worker import REPO

SIMULATOR = "simulator.example.com"


@pytest.mark.slow
def test_simulator_addresses_come_back_as_bounces_and_complaints(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing (make test installs it)")
    api_port, smtp_port, inbox_port, bounce_port = (free_port() for _ in range(4))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "SMTP_", "API_", "BOUNCE_", "SOFT_"))
    }
    env.update(
        PYTHONPATH=str(REPO),
        TEMPLATES_DIR=str(REPO / "templates"),
        API_KEYS="dev-key",
        BOUNCE_SMTP_PORT=str(bounce_port),
        SOFT_BOUNCE_LIMIT="2",
    )
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
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": "Bearer dev-key"},
        timeout=10,
    )

    def wait(what: str, check: Any, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            assert stack.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{what}\n" + log_path.read_text()[-3000:]
            time.sleep(0.2)

    def send(local: str) -> str:
        response = api.post(
            "/api/v1/notifications",
            json={"to": f"{local}@{SIMULATOR}", "template": "welcome",
                  "context": {"name": "Ada", "login_url": "https://example.com/login"}},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def record(notification_id: str) -> dict[str, Any]:
        return dict(api.get(f"/api/v1/notifications/{notification_id}").json())

    try:
        wait("the stack starts", lambda: "notifier is running" in log_path.read_text(), 90)
        assert f"127.0.0.1:{bounce_port} for bounces.localhost" in log_path.read_text()

        bounced = send("bounce")
        wait("bounced", lambda: record(bounced)["bounced_at"])
        entry = api.get(f"/api/v1/suppressions/bounce@{SIMULATOR}").json()
        assert (entry["reason"], entry["source"]) == ("hard_bounce", "dsn")

        complained = send("complaint")
        wait("complained", lambda: record(complained)["complained_at"])
        assert api.get(f"/api/v1/suppressions/complaint@{SIMULATOR}").json()["reason"] == (
            "complaint"
        )

        first_soft = send("soft")
        wait("one soft bounce", lambda: record(first_soft)["soft_bounce_count"] == 1)
        assert api.get(f"/api/v1/suppressions/soft@{SIMULATOR}").status_code == 404
        second_soft = send("soft")
        wait("two soft bounces", lambda: record(second_soft)["soft_bounce_count"] == 1)
        wait(
            "suppressed at SOFT_BOUNCE_LIMIT",
            lambda: api.get(f"/api/v1/suppressions/soft@{SIMULATOR}").status_code == 200,
        )

        # The next mail to a bounced address is not sent at all.
        again = send("bounce")
        wait("suppressed", lambda: record(again)["status"] == "suppressed")

        listed = run_cli(
            {**env, "REDIS_URL": _redis_url(log_path.read_text())}, "suppressions", "list"
        )
        assert listed.returncode == 0, listed.stderr
        assert f"bounce@{SIMULATOR}  hard_bounce  dsn" in listed.stdout
    finally:
        api.close()
        stack.send_signal(signal.SIGINT)
        stack.wait(60)
    assert stack.returncode == 0, log_path.read_text()[-3000:]


def _redis_url(output: str) -> str:
    for line in output.splitlines():
        if "Redis:" in line:
            return line.split("Redis:", 1)[1].strip()
    raise AssertionError("the banner names no Redis URL")

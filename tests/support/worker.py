"""A real Celery worker in a subprocess, consuming from the test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def service_env(
    *, redis_url: str, smtp_port: int, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment a worker or API process gets in tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "API_", "RATE_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_SECURITY": "none",
            "MAIL_FROM": "Notifier Tests <notifier@example.com>",
            "TEMPLATES_DIR": str(REPO / "templates"),
            "RETRY_BACKOFF_BASE": "0.2",
            "RETRY_BACKOFF_MAX": "1.0",
            "RETRY_MAX_ATTEMPTS": "5",
            "SCHEDULER_INTERVAL": "0.1",
            "SEND_TIMEOUT": "10",
            "TASK_TIME_LIMIT": "30",
            "BROKER_VISIBILITY_TIMEOUT": "60",
            "NOTIFIER_ENV": "development",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


class WorkerProcess:
    """``celery -A notifier worker`` with a log file tests can read."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 1,
        pool: str | None = None,
        name: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.env = env
        self.cwd = cwd or REPO
        self.log_path = log_path
        self.concurrency = concurrency
        self.pool = pool
        self.name = name or f"test-{uuid.uuid4().hex[:8]}@%h"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "notifier",
                "worker",
                "-l",
                "info",
                *(["-P", self.pool] if self.pool else []),
                "-c",
                str(self.concurrency),
                "-n",
                self.name,
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]

    def terminate(self, *, timeout: float = 60.0) -> None:
        """Warm shutdown (SIGTERM): running tasks finish, the rest go back to the queue."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the whole worker, children included."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

"""The operator CLI and a worker that must refuse to start, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys

from tests.support.worker import REPO


def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m notifier.cli ARGS`` in the repository with ``env``; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "notifier.cli", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_worker_to_exit(
    env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Start ``celery -A notifier worker`` and wait for it to exit: for configurations the
    worker must refuse at start (a test that hangs here found a worker that did not)."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "notifier", "worker", "-P", "solo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

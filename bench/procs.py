"""Processes the benchmark starts: a private redis-server, Celery workers, uvicorn servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 20.0, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"exited ({process.returncode}) before listening") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing on 127.0.0.1:{port} after {timeout}s") from None
            time.sleep(0.05)


class ManagedProcess:
    """A subprocess in its own session with its output in a log file; killed as a group."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: dict[str, str], log_path: Path):
        self.args = list(args)
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def child_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return sorted(int(pid) for pid in out.stdout.split())

    def stop(self, *, timeout: float = 30.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL the whole group if it lingers."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()
        self.process = None


class RedisProcess(ManagedProcess):
    """A private ``redis-server`` on a free port, no persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make bench installs it)")
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--maxmemory-policy", "noeviction",
            ],
            cwd=directory,
            env=dict(os.environ),
            log_path=directory / "redis.log",
        )  # fmt: skip

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        super().start()
        assert self.process is not None
        wait_for_port(self.port, process=self.process)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db)


class CeleryWorker(ManagedProcess):
    """``celery -A <app> worker [-P <pool>] -c <n>``, ready when its log says so.

    ``pool`` None leaves the app's own default (notifier's is its ConcurrentPool).
    """

    def __init__(
        self,
        *,
        app: str,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 2,
        pool: str | None = "prefork",
        extra: Sequence[str] = (),
    ) -> None:
        name = f"bench-{uuid.uuid4().hex[:8]}@%h"
        args = [
            sys.executable, "-m", "celery", "-A", app, "worker", "-l", "info",
            *(["-P", pool] if pool else []), "-c", str(concurrency), "-n", name,
            "--without-gossip", "--without-mingle", *extra,
        ]  # fmt: skip
        super().__init__(args, cwd=cwd, env=env, log_path=log_path)
        self.concurrency = concurrency

    def start(self, *, timeout: float = 60.0) -> None:
        if self.log_path.exists():
            self.log_path.unlink()
        super().start()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop(timeout=1)
                raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)
        # The pool's children exist once the worker says ready; wait until all are there.
        while len(self.child_pids()) < self.concurrency and time.monotonic() < deadline:
            time.sleep(0.05)


class UvicornServer(ManagedProcess):
    """``uvicorn <app>`` on a free port, one process, access log off."""

    def __init__(self, *, app: str, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        args = [
            sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
            "--port", str(self.port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        super().__init__(args, cwd=cwd, env=env, log_path=log_path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        super().start()
        assert self.process is not None
        try:
            wait_for_port(self.port, timeout=timeout, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_tail()
            self.stop(timeout=1)
            raise RuntimeError(f"{self.args[3]} did not start: {exc}\n{tail}") from None


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (``VmRSS`` in /proc), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (not its children), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuMeter:
    """CPU seconds each named process used between ``start()`` and ``stop()``."""

    def __init__(self, processes: dict[str, list[int]]) -> None:
        self.processes = processes
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, pids in self.processes.items():
            values = [cpu_seconds(pid) for pid in pids]
            totals[name] = sum(v for v in values if v is not None)
        totals["harness (publisher, sink reader)"] = sum(os.times()[:2])
        return totals

    def start(self) -> None:
        self.before = self._read()

    def stop(self, *, messages: int) -> dict[str, object]:
        after = self._read()
        self.used = {name: after[name] - self.before.get(name, 0.0) for name in after}
        return {
            "cpu_seconds": {k: round(v, 2) for k, v in self.used.items()},
            "cpu_ms_per_message": {k: round(1000 * v / messages, 3) for k, v in self.used.items()},
        }

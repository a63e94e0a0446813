"""The development stack behind ``make dev``: Redis, a worker, the API and the dev inbox.

Everything runs as child processes with prefixed logs in one terminal; Ctrl-C stops them
all, grandchildren included.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from notifier.errors import ConfigurationError

__all__ = ["DevStack"]

_COLOURS = {"redis": 31, "inbox": 35, "worker": 36, "api": 32}


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


@dataclass
class _Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    lines: list[str] = field(default_factory=list)


class DevStack:
    """Starts and supervises the local stack; ``run()`` blocks until Ctrl-C."""

    def __init__(
        self,
        *,
        data_dir: Path,
        api_port: int = 8000,
        smtp_port: int = 1025,
        inbox_port: int = 8025,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.api_port = api_port
        self.smtp_port = smtp_port
        self.inbox_port = inbox_port
        self.environ = dict(os.environ if environ is None else environ)
        self.children: list[_Child] = []
        self._stopping = threading.Event()
        self._print_lock = threading.Lock()
        self._colour = sys.stdout.isatty()

    # Output.

    def say(self, name: str, line: str) -> None:
        label = f"{name:<6}|"
        if self._colour:
            label = f"\x1b[{_COLOURS.get(name, 37)}m{label}\x1b[0m"
        with self._print_lock:
            print(f"{label} {line}", flush=True)

    def _pump(self, child: _Child) -> None:
        assert child.process is not None and child.process.stdout is not None
        for raw in child.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            child.lines.append(line)
            del child.lines[:-200]
            self.say(child.name, line)

    # Processes.

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> _Child:
        child = _Child(name, args)
        child.process = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own Ctrl-C handling stops them in order
        )
        threading.Thread(target=self._pump, args=(child,), daemon=True).start()
        self.children.append(child)
        return child

    def _wait(self, child: _Child, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert child.process is not None
            if child.process.poll() is not None:
                raise ConfigurationError(
                    f"{child.name} exited with code {child.process.returncode} while starting"
                )
            if time.monotonic() > deadline or self._stopping.is_set():
                raise ConfigurationError(f"{child.name} did not become ready in {timeout:g}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM every child's process group (newest first), then SIGKILL stragglers."""
        self._stopping.set()
        for child in reversed(self.children):
            if child.process and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(child.name, "did not stop in time; killing it")
            # Kill the whole group: a worker's pool children must not outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()

    # The stack.

    def _redis_url(self, env: dict[str, str]) -> tuple[str, list[str] | None]:
        if env.get("REDIS_URL"):
            return env["REDIS_URL"], None
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigurationError(
                "redis-server is not installed and REDIS_URL is not set; "
                "install it (apt-get install redis-server) or point REDIS_URL at a Redis"
            )
        port = 6379 if _port_free(6379) else _free_port()
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(redis_dir),
            "--appendonly", "yes",
            "--save", "",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        return f"redis://127.0.0.1:{port}/0", args

    def run(self) -> int:
        for port, what in (
            (self.api_port, "API"),
            (self.smtp_port, "dev inbox SMTP"),
            (self.inbox_port, "dev inbox web"),
            (int(self.environ.get("BOUNCE_SMTP_PORT") or 2525), "bounce receiver"),
        ):
            if not _port_free(port):
                raise ConfigurationError(f"port {port} for the {what} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(self.environ)
        redis_url, redis_args = self._redis_url(env)
        env["REDIS_URL"] = redis_url
        env.setdefault("NOTIFIER_ENV", "development")
        if not env.get("SMTP_HOST"):
            # Mail stays on this machine: the worker sends to the dev inbox.
            env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(self.smtp_port), SMTP_SECURITY="none")
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Bounces come back locally: VERP senders at this domain, the receiver takes them.
        env.setdefault("BOUNCE_DOMAIN", "bounces.localhost")
        env.setdefault("BOUNCE_SMTP_PORT", "2525")
        python = sys.executable

        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            if redis_args is not None:
                redis = self._start("redis", redis_args, env)
                port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
                self._wait(redis, lambda: _listening(port))
            inbox = self._start(
                "inbox",
                [
                    python, "-m", "notifier.devinbox",
                    "--maildir", str(self.data_dir / "mail"),
                    "--smtp-port", str(self.smtp_port),
                    "--http-port", str(self.inbox_port),
                ],
                env,
            )  # fmt: skip
            self._wait(inbox, lambda: _listening(self.smtp_port) and _listening(self.inbox_port))
            bounce_port = int(env["BOUNCE_SMTP_PORT"])
            bounces = self._start("bounces", [python, "-m", "notifier.cli", "bounces"], env)
            self._wait(bounces, lambda: _listening(bounce_port))
            worker = self._start(
                "worker",
                [python, "-m", "celery", "-A", "notifier", "worker", "-l", "info", "-c", "1",
                 "-E", "-n", "dev@%h", "-Q", "celery,webhooks"],
                env,
            )  # fmt: skip
            self._wait(worker, lambda: any(" ready." in line for line in worker.lines))
            api = self._start(
                "api",
                [python, "-m", "uvicorn", "api.main:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(self.api_port)],
                env,
            )  # fmt: skip
            self._wait(api, lambda: self._healthy(f"http://127.0.0.1:{self.api_port}/healthz"))
            self._banner(env)
            while not self._stopping.is_set():
                for child in self.children:
                    assert child.process is not None
                    if child.process.poll() is not None:
                        self.say(child.name, f"exited with code {child.process.returncode}")
                        return 1
                self._stopping.wait(0.5)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.say("dev", "stopped")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping.set()

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own URL
                return bool(response.status == 200)
        except OSError:
            return False

    def _banner(self, env: dict[str, str]) -> None:
        api = f"http://127.0.0.1:{self.api_port}"
        keys = [k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip()]
        auth = f" -H {shlex.quote('Authorization: Bearer ' + keys[0])}" if keys else ""
        body = (
            '{"to": "ada@example.com", "template": "welcome", '
            '"context": {"name": "Ada", "login_url": "https://example.com/login"}}'
        )
        hook = '{"url": "http://127.0.0.1:9000/hooks/notifier"}'
        lines = [
            "notifier is running. Ctrl-C stops everything.",
            f"  API docs:   {api}/docs",
            f"  Dev inbox:  http://127.0.0.1:{self.inbox_port}"
            f"  (SMTP on 127.0.0.1:{self.smtp_port})",
            f"  Redis:      {env['REDIS_URL']}",
            f"  Bounces:    SMTP on 127.0.0.1:{env['BOUNCE_SMTP_PORT']} for "
            f"{env['BOUNCE_DOMAIN']} (try bounce@simulator.example.com)",
            "Send a welcome email:",
            f"  curl -s -X POST {api}/api/v1/notifications -H 'Content-Type: application/json'"
            f"{auth} -d {shlex.quote(body)}",
            "Get signed webhooks about it (the answer holds the whsec_ secret to verify with):",
            f"  curl -s -X POST {api}/api/v1/webhooks/endpoints -H 'Content-Type: application/json'"
            f"{auth} -d {shlex.quote(hook)}",
        ]
        for line in lines:
            self.say("dev", line)

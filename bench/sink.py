"""SMTP sinks that swallow mail and tell the harness how many messages arrived.

Both kinds print ``mesg=<count>`` on stdout after every message: Postfix's ``smtp-sink -c``
does so by itself (its running counters are updated on every "."), and the aiosmtpd sink in
``bench/aiosmtpd_sink.py`` copies that format. A reader thread keeps the latest count.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.procs import BENCH, free_port, wait_for_port

_COUNT = re.compile(rb"mesg=(\d+)")


def find_smtp_sink() -> str | None:
    """Postfix's smtp-sink binary, if installed (Debian puts it in /usr/sbin)."""
    found = shutil.which("smtp-sink")
    if found:
        return found
    return "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None


class SinkStalled(RuntimeError):
    """The sink stopped receiving before it had the expected number of messages."""


class CountingSink:
    """A sink process whose stdout carries ``mesg=N`` counters."""

    kind = "sink"

    def __init__(self, args: list[str], port: int) -> None:
        self.args = args
        self.port = port
        self.count = 0
        self.last_change = time.monotonic()
        self._changed = threading.Condition()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="sink-reader", daemon=True)
        self._reader.start()
        wait_for_port(self.port, process=self.process)

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stream = self.process.stdout
        pending = b""
        while True:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return
            pending += chunk
            # Keep an unfinished counter at the end for the next chunk.
            cut = max(pending.rfind(b"\r"), pending.rfind(b"\n"))
            if cut < 0:
                continue
            complete, pending = pending[: cut + 1], pending[cut + 1 :]
            counts = _COUNT.findall(complete)
            if counts:
                value = int(counts[-1])
                with self._changed:
                    if value != self.count:
                        self.count = value
                        self.last_change = time.monotonic()
                        self._changed.notify_all()

    def wait_for(self, target: int, *, stall_timeout: float = 60.0) -> float:
        """Block until the sink has counted ``target`` messages; return when that happened.

        Raises SinkStalled when no message arrives for ``stall_timeout`` seconds first.
        """
        waiting_since = time.monotonic()
        with self._changed:
            while self.count < target:
                # Idle since the last message or since this wait began, whichever is later:
                # a sink that sat unused between rows has not stalled.
                idle = time.monotonic() - max(self.last_change, waiting_since)
                if idle > stall_timeout:
                    raise SinkStalled(
                        f"sink stalled at {self.count} (wanted {target}) for {stall_timeout:g}s"
                    )
                self._changed.wait(min(1.0, stall_timeout - idle + 0.01))
            return self.last_change

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None


class PostfixSink(CountingSink):
    """``smtp-sink -c``: C, event driven, discards everything."""

    kind = "smtp-sink"

    def __init__(self, binary: str) -> None:
        port = free_port()
        args = [binary, "-c"]
        if os.geteuid() == 0:
            # smtp-sink refuses to run as root without dropping privileges.
            args += ["-u", "nobody"]
        args += [f"127.0.0.1:{port}", "1024"]
        super().__init__(args, port)


class AiosmtpdSink(CountingSink):
    """A pure-Python aiosmtpd server in its own process (``bench/aiosmtpd_sink.py``)."""

    kind = "aiosmtpd"

    def __init__(self) -> None:
        port = free_port()
        super().__init__([sys.executable, str(BENCH / "aiosmtpd_sink.py"), str(port)], port)


class RelaySink(CountingSink):
    """``bench/relay.py``: an SMTP relay with latency (RTT per command, ACCEPT per message)."""

    kind = "latency-relay"

    def __init__(self, *, rtt_ms: float, accept_ms: float) -> None:
        self.rtt_ms, self.accept_ms = rtt_ms, accept_ms
        # Port 0: the relay binds a free port itself and names it, so no other process on
        # this shared machine can take the port between choosing and binding it.
        args = [sys.executable, str(BENCH / "relay.py"), "--port", "0"]
        args += ["--rtt", f"{rtt_ms:g}", "--accept", f"{accept_ms:g}"]
        super().__init__(args, 0)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        found = re.search(rb"port=(\d+)", first)
        if found is None:
            raise RuntimeError(f"the relay did not start: {first!r}")
        self.port = int(found.group(1))
        self._reader = threading.Thread(target=self._read, name="relay-reader", daemon=True)
        self._reader.start()


def make_sink(choice: str) -> CountingSink:
    """``auto`` prefers smtp-sink and falls back to aiosmtpd."""
    if choice in ("auto", "smtp-sink"):
        binary = find_smtp_sink()
        if binary is not None:
            return PostfixSink(binary)
        if choice == "smtp-sink":
            raise RuntimeError(
                "smtp-sink not found: install Debian's postfix package "
                "(DEBIAN_FRONTEND=noninteractive apt-get install -y postfix) or use --sink aiosmtpd"
            )
    return AiosmtpdSink()


def sink_summary(sink: CountingSink) -> dict[str, str]:
    program = [Path(sink.args[0]).name, *sink.args[1:]]
    return {"kind": sink.kind, "command": " ".join(program)}

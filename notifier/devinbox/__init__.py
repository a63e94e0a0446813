"""A development inbox ("MailHog without Docker"): an SMTP server that keeps every message in a
Maildir, and a web UI plus MailHog-compatible JSON API to read them.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import uvicorn
from aiosmtpd.controller import Controller

from notifier.devinbox.smtp import create_controller
from notifier.devinbox.store import (
    Attachment,
    Envelope,
    MaildirStore,
    MessageNotFound,
    StoredMessage,
)
from notifier.devinbox.web import create_app
from notifier.errors import NotifierError

__all__ = [
    "Attachment",
    "DevInbox",
    "DevInboxError",
    "Envelope",
    "MaildirStore",
    "MessageNotFound",
    "StoredMessage",
]

logger = logging.getLogger("notifier.devinbox")

#: How long start() waits for each server to bind, and stop() for the HTTP server to finish.
STARTUP_TIMEOUT = 10.0


class DevInboxError(NotifierError, OSError):
    """The inbox could not start, typically because a port is already taken."""


class DevInbox:
    """The SMTP server and the web UI over one Maildir, each in its own thread::

    inbox = DevInbox(maildir=Path(".notifier/inbox"), smtp_port=1025, http_port=8025)
    inbox.start()  # both ports are bound when this returns
    ...
    inbox.stop()  # both ports are free again
    """

    def __init__(
        self,
        *,
        maildir: Path,
        smtp_host: str = "127.0.0.1",
        smtp_port: int = 1025,
        http_host: str = "127.0.0.1",
        http_port: int = 8025,
        dkim_records: Mapping[str, str] | None = None,
    ) -> None:
        self.maildir = maildir
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.http_host = http_host
        self.http_port = http_port
        self.store = MaildirStore(maildir)
        #: DKIM keys (DNS name -> TXT value) the message page checks signatures against.
        self.dkim_records = dict(dkim_records or {})
        self._controller: Controller | None = None
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._controller is not None or self._http is not None

    def start(self) -> None:
        """Bind and serve SMTP and HTTP; raises DevInboxError if either cannot bind."""
        if self.running:
            raise RuntimeError("DevInbox is already running")
        # aiosmtpd only reports a failed bind after its whole ready_timeout; find out now.
        _bind(self.smtp_host, self.smtp_port, service="SMTP").close()
        controller = create_controller(self.store, host=self.smtp_host, port=self.smtp_port)
        try:
            controller.start()
        except Exception as exc:  # aiosmtpd re-raises whatever its server thread hit
            _stop_controller(controller)
            raise DevInboxError(
                f"cannot serve SMTP on {self.smtp_host}:{self.smtp_port}: {exc}"
            ) from exc
        self._controller = controller
        try:
            self._start_http()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "devinbox: SMTP on %s:%d, web UI on %s, Maildir %s",
            self.smtp_host,
            self.smtp_port,
            self.http_url,
            self.maildir,
        )

    def stop(self) -> None:
        """Stop both servers and free their ports; safe to call more than once."""
        http, thread, controller = self._http, self._http_thread, self._controller
        self._http = self._http_thread = self._controller = None
        if http is not None:
            http.should_exit = True
        if thread is not None:
            thread.join(STARTUP_TIMEOUT)
        if controller is not None:
            _stop_controller(controller)

    def serve_forever(self) -> None:
        """Start (if needed) and block until SIGINT or SIGTERM, then stop. Main thread only."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.info("devinbox: %s received, stopping", signal.Signals(signum).name)
            stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if not self.running:
                self.start()
            stopping.wait()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> DevInbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start_http(self) -> None:
        # Binding here rather than in uvicorn turns "port in use" into an exception; uvicorn
        # would log it and sys.exit() inside its thread.
        sock = _bind(self.http_host, self.http_port, service="HTTP")
        config = uvicorn.Config(
            create_app(self.store, dkim_records=self.dkim_records),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        # Server.run only installs signal handlers in the main thread, so none here.
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="devinbox-http", daemon=True
        )
        self._http, self._http_thread = server, thread
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                sock.close()
                raise DevInboxError(f"HTTP server on {self.http_url} exited while starting")
            if time.monotonic() > deadline:
                raise DevInboxError(f"HTTP server did not start within {STARTUP_TIMEOUT:g}s")
            time.sleep(0.01)


def _stop_controller(controller: Controller) -> None:
    # aiosmtpd leaves its loop open when the server failed to start; close it either way.
    controller.stop(no_assert=True)
    if not controller.loop.is_closed():
        controller.loop.close()


def _bind(host: str, port: int, *, service: str) -> socket.socket:
    """A TCP socket bound the way asyncio's servers bind (SO_REUSEADDR), not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DevInboxError(f"cannot serve {service} on {host}:{port}: {exc}") from exc
    return sock

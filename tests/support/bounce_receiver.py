"""The bounce receiver (``serve_bounces``) on its own event loop in a thread, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading

from notifier.bounces.receiver import serve_bounces
from notifier.settings import Settings
from tests.support.ports import free_port, wait_for_port


class BounceReceiver:
    """``serve_bounces(settings)`` on a free port; ``send`` talks SMTP to it like an MTA."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._task = self.loop.create_task(serve_bounces(self.settings, port=self.port))
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)
        self.loop.close()

    def start(self) -> BounceReceiver:
        self.thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
        self.thread.join(10)

    def send(self, raw: bytes, *, to: str, mail_from: str = "") -> tuple[int, bytes]:
        """Deliver ``raw`` with the null sender (as a DSN comes); returns the last reply."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo()
            client.mail(mail_from)
            code, reply = client.rcpt(to)
            if code >= 400:
                return code, reply
            return client.data(raw)

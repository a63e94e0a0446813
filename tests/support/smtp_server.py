"""A real SMTP server (aiosmtpd) on loopback that records every message and fails on demand.

Tests tell it to answer a code at RCPT or DATA for given recipients or for the next N
messages, to answer 421 and hang up, or to go away altogether, the way aiosmtplib's own
suite drives its test server.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.ports import free_port


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: float

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    @property
    def message_id(self) -> str:
        return str(self.parsed()["Message-ID"])


@dataclass
class FailureRule:
    stage: str  # "rcpt" or "data"
    code: int
    recipients: frozenset[str] | None = None
    remaining: int | None = None  # None: every time
    disconnect: bool = False
    delay: float = 0.0  # seconds to wait before answering; a code < 400 then answers normally

    def reply(self) -> str:
        return f"{self.code} {'4.0.0 try later' if self.code < 500 else '5.0.0 refused'}"


@dataclass
class _State:
    messages: list[ReceivedMessage] = field(default_factory=list)
    rules: list[FailureRule] = field(default_factory=list)
    connections: int = 0
    quits: int = 0
    hangups_in_delay: int = 0
    rejected: list[tuple[str, int, str]] = field(default_factory=list)


class _CountingSMTP(SMTP):
    def __init__(self, handler: Any, state: _State, lock: threading.Lock, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._state = state
        self._lock = lock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with self._lock:
            self._state.connections += 1
        super().connection_made(transport)

    async def smtp_QUIT(self, arg: str) -> None:
        with self._lock:
            self._state.quits += 1
        await super().smtp_QUIT(arg)


class _Handler:
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    def _match(self, stage: str, address: str | None) -> FailureRule | None:
        with self.server.lock:
            for rule in self.server.state.rules:
                if rule.stage != stage:
                    continue
                if rule.recipients is not None and (
                    address is None or address.lower() not in rule.recipients
                ):
                    continue
                if rule.remaining is not None:
                    if rule.remaining <= 0:
                        continue
                    rule.remaining -= 1
                return rule
        return None

    def _refuse(self, smtp: SMTP, rule: FailureRule, address: str, stage: str) -> str:
        with self.server.lock:
            self.server.state.rejected.append((address, rule.code, stage))
        if rule.disconnect:
            asyncio.get_running_loop().call_soon(smtp.transport.close)
        return rule.reply()

    async def _delay(self, rule: FailureRule) -> None:
        try:
            await asyncio.sleep(rule.delay)
        except asyncio.CancelledError:
            # aiosmtpd cancels the session's handler when the client hangs up (or sends EOF).
            with self.server.lock:
                self.server.state.hangups_in_delay += 1
            raise

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        rule = self._match("rcpt", address)
        if rule is not None and rule.delay:
            await self._delay(rule)
        if rule is not None and rule.code >= 400:
            return self._refuse(smtp, rule, address, "rcpt")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else None
        rule = self._match("data", first)
        if rule is not None and rule.delay:
            await self._delay(rule)
        if rule is not None and rule.code >= 400:
            return self._refuse(smtp, rule, ",".join(envelope.rcpt_tos), "data")
        content = envelope.original_content or b""
        with self.server.lock:
            self.server.state.messages.append(
                ReceivedMessage(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=content,
                    received_at=time.time(),
                )
            )
            number = len(self.server.state.messages)
        return f"250 2.0.0 Ok: queued as TEST{number:06d}"


class _Controller(Controller):
    def __init__(self, server: RecordingSMTPServer, port: int) -> None:
        self._server = server
        super().__init__(_Handler(server), hostname="127.0.0.1", port=port, ready_timeout=10.0)

    def factory(self) -> SMTP:
        return _CountingSMTP(
            self.handler,
            self._server.state,
            self._server.lock,
            enable_SMTPUTF8=True,
            data_size_limit=50 * 1024 * 1024,
        )


class RecordingSMTPServer:
    """aiosmtpd on 127.0.0.1, recording envelope and raw bytes of every accepted message."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.state = _State()
        self.lock = threading.Lock()
        self._controller: _Controller | None = None

    def start(self) -> None:
        self._controller = _Controller(self, self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    # What tests read.

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self.lock:
            return list(self.state.messages)

    @property
    def connections(self) -> int:
        with self.lock:
            return self.state.connections

    @property
    def quits(self) -> int:
        """QUIT commands received: clients that closed their connection politely."""
        with self.lock:
            return self.state.quits

    @property
    def hangups_in_delay(self) -> int:
        """Clients that hung up while a delayed reply (``fail(..., delay=...)``) was pending."""
        with self.lock:
            return self.state.hangups_in_delay

    @property
    def rejected(self) -> list[tuple[str, int, str]]:
        with self.lock:
            return list(self.state.rejected)

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def wait_for(
        self, count: int, *, timeout: float = 20.0, to: str | None = None
    ) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_to(to) if to else self.messages
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} message(s){' to ' + to if to else ''}, got {len(found)}"
                )
            time.sleep(0.05)

    # What tests tell it.

    def fail(
        self,
        code: int,
        *,
        stage: str = "rcpt",
        recipients: list[str] | None = None,
        times: int | None = None,
        disconnect: bool = False,
        delay: float = 0.0,
    ) -> FailureRule:
        """Answer ``code`` at ``stage``; with ``delay``, wait that long first (a ``code``
        below 400, e.g. 250, then lets the command succeed: a slow server)."""
        rule = FailureRule(
            stage=stage,
            code=code,
            recipients=frozenset(r.lower() for r in recipients) if recipients else None,
            remaining=times,
            disconnect=disconnect,
            delay=delay,
        )
        with self.lock:
            self.state.rules.append(rule)
        return rule

    def reset(self) -> None:
        with self.lock:
            self.state.messages.clear()
            self.state.rules.clear()
            self.state.rejected.clear()
            self.state.connections = 0
            self.state.quits = 0
            self.state.hangups_in_delay = 0

"""An SMTP relay with latency: each reply comes one round trip after its command arrived.

It stands in for a relay that is not on loopback: every command is answered ``--rtt`` ms after
it arrived, and the end of a message's data ``--rtt`` + ``--accept`` ms after it arrived (the
time a relay takes to queue a message). Replies are scheduled on timers, not served one after
another, so many connections (or pipelined commands) wait out their latency at once; replies
on one connection still leave in order. ``--max-connections`` answers 421 to connections
beyond that many open ones, as busy relays do. A message counts as delivered when its 250 is
written; like the sinks in ``bench/sink.py`` it prints ``mesg=<count>`` after each one.

    python bench/relay.py --port 2525 --rtt 5 --accept 25 [--max-connections 20]

It prints ``listening port=<port>`` once listening (``--port 0``: a free port of its choice).

Tests start it in-process (:class:`LatencyRelay`), read what it accepted, and change the accept
delay or the connection limit while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["AcceptedMessage", "LatencyRelay", "main"]

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)
_END_OF_DATA = b"\r\n.\r\n"


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """One message the relay said 250 to."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str
    #: ``time.time()`` when the 250 was written.
    accepted_at: float
    size: int


@dataclass
class _Stats:
    accepted: list[AcceptedMessage] = field(default_factory=list)
    count: int = 0
    connections: int = 0
    open: int = 0
    peak_open: int = 0
    refused_connections: int = 0
    quits: int = 0
    dropped_before_reply: int = 0
    #: Messages whose data arrived and whose 250 has not gone out yet (sends in flight).
    awaiting_accept: int = 0


class _Session(asyncio.Protocol):
    """One SMTP connection; commands are parsed as they arrive, replies go out on timers."""

    def __init__(self, relay: LatencyRelay) -> None:
        self.relay = relay
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.in_data = False
        self.mail_from = ""
        self.rcpt_tos: list[str] = []
        #: When the last scheduled reply leaves: later replies never overtake it.
        self.last_reply_at = 0.0
        self.counted = False

    # Connection.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        stats, limit = self.relay.stats, self.relay.max_connections
        if limit is not None and stats.open >= limit:
            stats.refused_connections += 1
            transport.write(b"421 4.7.0 relay: too many connections, try again later\r\n")
            transport.close()
            return
        self.counted = True
        stats.connections += 1
        stats.open += 1
        stats.peak_open = max(stats.peak_open, stats.open)
        self._reply(self.loop.time(), self.relay.rtt, b"220 relay.bench ESMTP latency relay\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.relay.stats.open -= 1
            self.counted = False
        self.transport = None

    # Commands.

    def data_received(self, data: bytes) -> None:
        arrived = self.loop.time()
        self.buffer += data
        while self.buffer and self.transport is not None:
            if self.in_data:
                # The terminator may be the first line of the data (an empty body).
                probe = b"\r\n" + self.buffer
                end = probe.find(_END_OF_DATA)
                if end < 0:
                    return
                body = probe[2 : end + 2]
                self.buffer = probe[end + len(_END_OF_DATA) :]
                self.in_data = False
                self._end_of_data(arrived, body)
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            self._command(arrived, line)

    def _command(self, arrived: float, line: bytes) -> None:
        verb, _, argument = line.decode("utf-8", "replace").partition(" ")
        verb = verb.upper()
        rtt = self.relay.rtt
        if verb == "EHLO":
            reply = b"250-relay.bench\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n"
        elif verb == "HELO":
            reply = b"250 relay.bench\r\n"
        elif verb == "MAIL":
            self.mail_from, self.rcpt_tos = _address(argument), []
            reply = b"250 2.1.0 Ok\r\n"
        elif verb == "RCPT":
            self.rcpt_tos.append(_address(argument))
            reply = b"250 2.1.5 Ok\r\n"
        elif verb == "DATA":
            if not self.rcpt_tos:
                reply = b"503 5.5.1 need RCPT first\r\n"
            else:
                self.in_data = True
                reply = b"354 End data with <CR><LF>.<CR><LF>\r\n"
        elif verb in ("RSET", "NOOP"):
            if verb == "RSET":
                self.mail_from, self.rcpt_tos = "", []
            reply = b"250 2.0.0 Ok\r\n"
        elif verb == "QUIT":
            self.relay.stats.quits += 1
            self._reply(arrived, rtt, b"221 2.0.0 Bye\r\n", then=self._close)
            return
        else:
            reply = b"502 5.5.2 command not recognised\r\n"
        self._reply(arrived, rtt, reply)

    def _end_of_data(self, arrived: float, body: bytes) -> None:
        envelope = (self.mail_from, tuple(self.rcpt_tos))
        self.mail_from, self.rcpt_tos = "", []

        def accept() -> bytes | None:
            return self.relay._accept(envelope[0], envelope[1], body)

        self.relay.stats.awaiting_accept += 1

        self._reply(arrived, self.relay.rtt + self.relay.accept, accept)

    # Replies.

    def _reply(
        self,
        arrived: float,
        delay: float,
        reply: bytes | Callable[[], bytes | None],
        *,
        then: Callable[[], None] | None = None,
    ) -> None:
        at = max(arrived + delay, self.last_reply_at)
        self.last_reply_at = at

        def send() -> None:
            transport = self.transport
            if callable(reply):
                self.relay.stats.awaiting_accept -= 1
            if transport is None or transport.is_closing():
                if callable(reply):
                    # The client is gone before the 250: the message was not taken.
                    self.relay.stats.dropped_before_reply += 1
                return
            payload = reply() if callable(reply) else reply
            if payload:
                transport.write(payload)
            if then is not None:
                then()

        self.loop.call_at(at, send)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _address(argument: str) -> str:
    start, end = argument.find("<"), argument.rfind(">")
    return argument[start + 1 : end] if 0 <= start < end else argument.partition(":")[2].strip()


class LatencyRelay:
    """The relay: ``rtt`` and ``accept`` in seconds, changeable while it runs."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rtt: float = 0.005,
        accept: float = 0.025,
        max_connections: int | None = None,
        record: bool = True,
        on_accept: Callable[[int], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.rtt = rtt
        self.accept = accept
        self.max_connections = max_connections
        #: Keep every accepted message's envelope and Message-ID (tests); the bench only counts.
        self.record = record
        self.on_accept = on_accept
        self.stats = _Stats()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def _accept(self, mail_from: str, rcpt_tos: tuple[str, ...], body: bytes) -> bytes:
        found = None
        if self.record:
            header_end = body.find(b"\r\n\r\n")
            found = _MESSAGE_ID.search(body if header_end < 0 else body[: header_end + 2])
        with self._lock:
            self.stats.count += 1
            number = self.stats.count
            if self.record:
                self.stats.accepted.append(
                    AcceptedMessage(
                        mail_from=mail_from,
                        rcpt_tos=rcpt_tos,
                        message_id=found.group(1).decode("ascii", "replace") if found else "",
                        accepted_at=time.time(),
                        size=len(body),
                    )
                )
        if self.on_accept is not None:
            self.on_accept(number)
        return f"250 2.0.0 Ok: queued as R{number:08d}\r\n".encode()

    async def serve(self) -> asyncio.Server:
        """Listen on the running loop (the caller keeps it running)."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Session(self), self.host, self.port, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    # In a thread, for tests.

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="latency-relay", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the latency relay did not start")

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or self._thread is None:
            return

        def shut() -> None:
            server.close()
            loop.stop()

        loop.call_soon_threadsafe(shut)
        self._thread.join(10)
        self._thread = None

    @property
    def messages(self) -> list[AcceptedMessage]:
        with self._lock:
            return list(self.stats.accepted)

    @property
    def count(self) -> int:
        with self._lock:
            return self.stats.count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--rtt", type=float, default=5.0, help="ms per command (default 5)")
    parser.add_argument(
        "--accept", type=float, default=25.0, help="ms to accept a message (default 25)"
    )
    parser.add_argument("--max-connections", type=int, default=None)
    args = parser.parse_args(argv)

    def report(number: int) -> None:
        sys.stdout.write(f"mesg={number}\n")
        sys.stdout.flush()

    relay = LatencyRelay(
        host=args.host,
        port=args.port,
        rtt=args.rtt / 1000,
        accept=args.accept / 1000,
        max_connections=args.max_connections,
        record=False,
        on_accept=report,
    )

    async def run() -> None:
        server = await relay.serve()
        # With --port 0 the system picks a free port; say which one (the bench reads it).
        sys.stdout.write(f"listening port={relay.port}\n")
        sys.stdout.flush()
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()

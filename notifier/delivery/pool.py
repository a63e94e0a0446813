"""SMTPPool: a bounded pool of SMTP connections to one relay, shared by a process's sends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiosmtplib

from notifier.compose.mime import OutgoingEmail
from notifier.delivery.classify import classify_smtp_error
from notifier.delivery.transport import SendResult, SMTPTransport
from notifier.errors import TransientDeliveryError
from notifier.settings import Settings

__all__ = ["SMTPPool"]

log = logging.getLogger(__name__)

#: After the relay refused a connection (or answered 421), wait this long before growing the
#: pool again, one connection at a time.
RECOVER_AFTER_SECONDS = 30.0
#: A relay that answers 421 while this process has no connection open is retried after this
#: long, doubling up to the maximum, until ``send_timeout``.
BUSY_RETRY_FIRST_SECONDS = 0.2
BUSY_RETRY_MAX_SECONDS = 2.0
#: Idle connections are closed (QUIT) after this long, freeing the relay's connection slots
#: for other processes and clients.
IDLE_CLOSE_SECONDS = 10.0


class SMTPPool:
    """Up to ``size`` SMTP connections to one relay, each used by one send at a time.

    Sends wait for a free connection; an idle one is reused (the most recently used first,
    so a quiet process keeps few connections open), a broken one is replaced. When the relay
    refuses a new connection or answers 421 ("too many connections", "closing"), the message
    was not taken, so the pool shrinks to the connections still open and the send waits for
    one of them instead of failing; the pool grows back one connection per
    ``recover_after`` seconds. The per-connection message cap
    (``SMTP_MAX_MESSAGES_PER_CONNECTION``) is each connection's own (:class:`SMTPTransport`).
    The pool belongs to the event loop it is first used on.
    """

    def __init__(
        self,
        factory: Callable[[], SMTPTransport],
        *,
        size: int,
        send_timeout: float,
        recover_after: float = RECOVER_AFTER_SECONDS,
    ) -> None:
        if size < 1:
            raise ValueError("an SMTP pool needs at least one connection")
        self._factory = factory
        self.size = size
        self.send_timeout = send_timeout
        self.recover_after = recover_after
        #: Idle connections, the most recently used last (reused first).
        self._idle: list[SMTPTransport] = []
        self._busy: set[SMTPTransport] = set()
        self._limit = size
        self._grow_at = 0.0
        self._changed: asyncio.Condition | None = None
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._idle_since: dict[SMTPTransport, float] = {}
        self._retired_opened = 0
        #: How often the relay made the pool shrink; operators and tests read it.
        self.shrinks = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPPool:
        return cls(
            lambda: SMTPTransport.from_settings(settings),
            size=settings.smtp_connections_per_process,
            send_timeout=settings.send_timeout,
        )

    @property
    def limit(self) -> int:
        """How many connections the pool may hold now (``size`` unless the relay pushed back)."""
        return self._limit

    @property
    def open_connections(self) -> int:
        return sum(1 for slot in (*self._idle, *self._busy) if slot.connected)

    @property
    def connections_opened(self) -> int:
        """Connections opened over the pool's life."""
        slots = (*self._idle, *self._busy)
        return self._retired_opened + sum(slot.connections_opened for slot in slots)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def send(
        self, email: OutgoingEmail, *, recipients: tuple[str, ...] | None = None
    ) -> SendResult:
        """Send ``email`` over a pooled connection; raise a DeliveryError.

        Waiting for a connection counts against ``send_timeout`` too: the notification's
        sending lease (``SEND_TIMEOUT`` + 30 s) must outlast the whole call.
        """
        refusals: list[TransientDeliveryError] = []
        try:
            async with asyncio.timeout(self.send_timeout):
                return await self._send(email, recipients, refusals)
        except TimeoutError as exc:
            if refusals:
                last = refusals[-1]
                raise TransientDeliveryError(
                    f"the relay kept refusing connections for {self.send_timeout:g}s: {last}",
                    code=last.code,
                ) from exc
            raise TransientDeliveryError(
                f"send did not finish within {self.send_timeout:g}s"
            ) from exc

    async def _send(
        self,
        email: OutgoingEmail,
        recipients: tuple[str, ...] | None,
        refusals: list[TransientDeliveryError],
    ) -> SendResult:
        delay = BUSY_RETRY_FIRST_SECONDS
        while True:
            slot = await self._acquire()
            reusable = busy = False
            try:
                try:
                    await slot.connect()
                except (aiosmtplib.SMTPException, OSError) as exc:
                    error = classify_smtp_error(exc)
                    if isinstance(error, TransientDeliveryError) and self._push_back(slot, error):
                        continue
                    if error.code != 421:
                        raise error from exc
                    # The relay is up but has no room for us (its connections are taken by
                    # other processes or clients): wait for one, within send_timeout, rather
                    # than spend one of the notification's attempts.
                    assert isinstance(error, TransientDeliveryError)
                    refusals.append(error)
                    busy = True
                try:
                    result = await slot.send(email, recipients=recipients)
                except TransientDeliveryError as error:
                    # A 421 means the relay did not take the message and is closing this
                    # connection: another connection may send it now, or this one later.
                    if error.code != 421:
                        reusable = slot.connected
                        raise
                    if self._push_back(slot, error):
                        continue
                    refusals.append(error)
                    busy = True
                    continue
                reusable = True
                return result
            finally:
                await self._release(slot, reusable=reusable)
                if busy:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BUSY_RETRY_MAX_SECONDS)

    def _push_back(self, slot: SMTPTransport, error: TransientDeliveryError) -> bool:
        """The relay refused ``slot``: shrink to the connections still open.

        True when another open connection can take the message, False when none is left (the
        send then fails as transient and is retried on the notification's schedule).
        """
        slot.drop()
        others = sum(1 for s in (*self._idle, *self._busy) if s is not slot and s.connected)
        if others == 0:
            return False
        if others < self._limit:
            self.shrinks += 1
            log.warning(
                "SMTP relay %s:%s pushed back (%s); using %d connection(s) for %.0fs",
                slot.hostname,
                slot.port,
                error,
                others,
                self.recover_after,
            )
        self._limit = min(self._limit, others)
        self._grow_at = time.monotonic() + self.recover_after
        return True

    async def _acquire(self) -> SMTPTransport:
        changed = self._condition()
        async with changed:
            while True:
                if self._closed:
                    raise TransientDeliveryError("the SMTP connection pool is closed")
                now = time.monotonic()
                if self._limit < self.size and now >= self._grow_at:
                    self._limit += 1
                    self._grow_at = now + self.recover_after
                if len(self._busy) < self._limit:
                    slot = self._idle.pop() if self._idle else self._factory()
                    self._idle_since.pop(slot, None)
                    self._busy.add(slot)
                    return slot
                if self._limit < self.size:
                    # Wake up when the pool may grow again, even if nobody releases.
                    try:
                        async with asyncio.timeout(max(0.0, self._grow_at - now)):
                            await changed.wait()
                    except TimeoutError:
                        pass
                else:
                    await changed.wait()

    async def _release(self, slot: SMTPTransport, *, reusable: bool) -> None:
        self._busy.discard(slot)
        excess = len(self._idle) + len(self._busy) >= self._limit
        if self._closed or excess or not reusable:
            self._retired_opened += slot.connections_opened
            if reusable:
                await slot.close()
            else:
                slot.drop()
        else:
            self._idle.append(slot)
            self._idle_since[slot] = time.monotonic()
            self._schedule_sweep()
        changed = self._condition()
        async with changed:
            changed.notify()

    def _schedule_sweep(self) -> None:
        if self._sweep is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(IDLE_CLOSE_SECONDS, self._close_idle)

    def _close_idle(self) -> None:
        self._sweep = None
        cutoff = time.monotonic() - IDLE_CLOSE_SECONDS
        stale = [slot for slot in self._idle if self._idle_since.get(slot, 0.0) <= cutoff]
        for slot in stale:
            self._idle.remove(slot)
            self._idle_since.pop(slot, None)
            self._retired_opened += slot.connections_opened
            # Not awaited: the QUIT finishes on its own; a failure only drops the connection.
            task = asyncio.get_running_loop().create_task(slot.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self._idle:
            self._schedule_sweep()

    async def close(self) -> None:
        """QUIT every connection; sends still waiting for one fail as transient."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        changed = self._condition()
        async with changed:
            changed.notify_all()
        slots, self._idle = [*self._idle, *self._busy], []
        self._busy.clear()
        for slot in slots:
            self._retired_opened += slot.connections_opened
        await asyncio.gather(*(slot.close() for slot in slots), return_exceptions=True)

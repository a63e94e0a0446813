"""SMTPTransport: one reused aiosmtplib connection; MailSender: what delivery sends through."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib

from notifier.compose.mime import OutgoingEmail
from notifier.delivery.classify import classify_reply, classify_smtp_error
from notifier.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from notifier.settings import Settings

__all__ = ["MailSender", "SMTPTransport", "SendResult"]

log = logging.getLogger(__name__)

#: A connection idle for longer than this gets a NOOP before it is trusted again.
IDLE_CHECK_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class SendResult:
    """A message the server took for at least one recipient."""

    reply: str
    accepted: tuple[str, ...]
    #: Recipients the server refused while accepting others, with the error for each.
    refused: dict[str, DeliveryError] = field(default_factory=dict)


class MailSender(Protocol):
    """What delivery sends through: one connection, or a pool of them (``SMTPPool``)."""

    async def send(
        self, email: OutgoingEmail, *, recipients: tuple[str, ...] | None = None
    ) -> SendResult: ...

    async def close(self) -> None: ...


def _mail_options(smtp: aiosmtplib.SMTP, sender: str, recipients: tuple[str, ...]) -> list[str]:
    """``["SMTPUTF8"]`` when an envelope address has a non-ASCII local part (RFC 6531).

    A relay that does not offer SMTPUTF8 can never take such an address: a permanent
    failure naming it, instead of the encoding error aiosmtplib would raise.
    """
    if sender.isascii() and all(address.isascii() for address in recipients):
        return []
    if not smtp.supports_extension("smtputf8"):
        odd = next(a for a in (sender, *recipients) if not a.isascii())
        raise PermanentDeliveryError(
            f"{odd} has a non-ASCII local part, which needs SMTPUTF8, and the relay does not "
            "offer it",
            recipient=None if odd == sender else odd,
        )
    return ["SMTPUTF8"]


class SMTPTransport:
    """Sends OutgoingEmail over a persistent connection, reconnecting when needed.

    Not safe for concurrent use from several tasks: one send at a time (``SMTPPool`` gives each
    send its own), and the connection belongs to the event loop it was opened on.
    """

    def __init__(
        self,
        *,
        hostname: str,
        port: int,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        send_timeout: float = 60.0,
        validate_certs: bool = True,
        max_messages_per_connection: int = 1000,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.send_timeout = send_timeout
        self.validate_certs = validate_certs
        self.max_messages_per_connection = max_messages_per_connection
        self._smtp: aiosmtplib.SMTP | None = None
        self._sent_on_connection = 0
        self._last_used = 0.0
        #: Connections opened so far; operators and tests read it.
        self.connections_opened = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPTransport:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            hostname=settings.smtp_host,
            port=settings.effective_smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password,
            timeout=settings.smtp_timeout,
            send_timeout=settings.send_timeout,
            validate_certs=settings.smtp_validate_certs,
            max_messages_per_connection=settings.smtp_max_messages_per_connection,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            validate_certs=self.validate_certs,
        )
        await smtp.connect()
        if self.username:
            await smtp.login(self.username, self.password or "")
        self.connections_opened += 1
        self._sent_on_connection = 0
        log.debug("SMTP connection opened to %s:%s", self.hostname, self.port)
        return smtp

    async def _connection(self) -> aiosmtplib.SMTP:
        smtp = self._smtp
        if smtp is not None and smtp.is_connected:
            if self._sent_on_connection >= self.max_messages_per_connection:
                await self.close()
            elif time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
                try:
                    await smtp.noop()
                    return smtp
                except (aiosmtplib.SMTPException, OSError):
                    self.drop()
            else:
                return smtp
        self.drop()
        self._smtp = await self._connect()
        return self._smtp

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may still turn out to be stale)."""
        return self._smtp is not None and self._smtp.is_connected

    async def connect(self) -> None:
        """Open the connection unless one is usable; raises what aiosmtplib raised.

        :class:`~notifier.delivery.pool.SMTPPool` connects first, so that a refused connection
        (which cannot have sent anything) is told apart from a failed transaction.
        """
        try:
            await self._connection()
        except BaseException:
            self.drop()
            raise

    async def send(
        self, email: OutgoingEmail, *, recipients: tuple[str, ...] | None = None
    ) -> SendResult:
        """Send ``email`` to ``recipients`` (default: its envelope); raise a DeliveryError.

        Only SMTP and network errors become DeliveryErrors; any other exception is a bug and
        propagates unchanged.

        The whole exchange, connecting included, must finish within ``send_timeout``; on a
        timeout the pending SMTP coroutine is cancelled and the connection dropped, so a
        half-finished transaction cannot complete later.
        """
        rcpt = recipients if recipients is not None else email.recipients
        # Anything but a clean answer from the server (a timeout, a dropped connection, a
        # cancelled task, a bug below us) leaves the connection in an unknown state: drop it.
        keep_connection = False
        try:
            async with asyncio.timeout(self.send_timeout):
                smtp = await self._connection()
                errors, reply = await smtp.sendmail(
                    email.envelope_from,
                    list(rcpt),
                    email.as_bytes(),
                    mail_options=_mail_options(smtp, email.envelope_from, rcpt),
                )
            keep_connection = True
        except TimeoutError as exc:
            raise TransientDeliveryError(
                f"send did not finish within {self.send_timeout:g}s"
            ) from exc
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            # The server answered; aiosmtplib already reset the envelope. A 421 means it is
            # closing the connection, so do not reuse it.
            keep_connection = getattr(exc, "code", None) != 421 and bool(
                self._smtp and self._smtp.is_connected
            )
            raise classify_smtp_error(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify_smtp_error(exc) from exc
        finally:
            if not keep_connection:
                self.drop()
        self._sent_on_connection += 1
        self._last_used = time.monotonic()
        refused = {
            address: classify_reply(response.code, response.message, recipient=address)
            for address, response in errors.items()
        }
        accepted = tuple(address for address in rcpt if address not in refused)
        return SendResult(reply=f"250 {reply}".strip(), accepted=accepted, refused=refused)

    def drop(self) -> None:
        """Forget the connection without a QUIT (after errors or timeouts)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except Exception:
                log.debug("closing a broken SMTP connection failed", exc_info=True)

    async def close(self) -> None:
        """QUIT politely, then close."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            try:
                await asyncio.wait_for(smtp.quit(), self.timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()

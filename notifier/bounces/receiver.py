"""``notifier bounces``: an aiosmtpd server taking DSNs and ARF reports for BOUNCE_DOMAIN.

Reports addressed to a valid VERP address are applied; anything else that arrives (an
unreadable message, a report without a valid token, an auto-reply) is kept, bounded, for a
person to read, and answered 250 so the sending MTA does not bounce it back again.
"""

from __future__ import annotations

import asyncio
import email
import functools
import logging
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from notifier.bounces.handling import FeedbackProcessor
from notifier.bounces.parse import parse_report
from notifier.errors import ConfigurationError, StoreUnavailable
from notifier.settings import Settings
from notifier.storage.connection import connect_async
from notifier.storage.store import NotificationStore
from notifier.storage.suppressions import SuppressionStore
from notifier.unsubscribe.mailto import apply_unsubscribe_mail, is_unsubscribe_address

__all__ = ["BounceHandler", "ReceiverResult", "serve_bounces"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceiverResult:
    """What the receiver did with one message (for logs and tests)."""

    applied: int
    duplicates: int
    kept_id: str | None


class BounceHandler:
    """aiosmtpd handler: RCPT only for the bounce domain; DATA parsed, applied or kept."""

    def __init__(
        self,
        *,
        processor: FeedbackProcessor,
        suppressions: SuppressionStore,
        domain: str,
        keep_limit: int,
    ) -> None:
        self.processor = processor
        self.suppressions = suppressions
        self.domain = domain.lower()
        self.keep_limit = keep_limit

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.rpartition("@")[2].lower() != self.domain:
            return "550 5.1.1 This server takes bounces for its own domain only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            result = await self.receive(
                raw,
                mail_from=str(envelope.mail_from or "").strip("<>"),
                rcpt_to=tuple(envelope.rcpt_tos),
            )
        except StoreUnavailable:
            # The sending MTA keeps the report and tries again: nothing is lost.
            return "451 4.3.0 Storage unavailable, try again later"
        if result.kept_id:
            return f"250 2.0.0 Kept for review as {result.kept_id}"
        return f"250 2.0.0 OK: {result.applied} applied"

    async def receive(
        self, raw: bytes, *, mail_from: str, rcpt_to: tuple[str, ...]
    ) -> ReceiverResult:
        """Classify one message and apply its events, or keep it; raises StoreUnavailable."""
        if any(is_unsubscribe_address(address, self.domain) for address in rcpt_to):
            # The mailto of List-Unsubscribe, not a report.
            unsubscribe_problem = await apply_unsubscribe_mail(
                self.processor.settings, self.suppressions, raw
            )
            if unsubscribe_problem is None:
                return ReceiverResult(applied=1, duplicates=0, kept_id=None)
            kept = await self.suppressions.keep_unclassified(
                raw=raw,
                mail_from=mail_from,
                rcpt_to=rcpt_to,
                problem=unsubscribe_problem,
                limit=self.keep_limit,
            )
            log.warning("inbound mail kept for review as %s: %s", kept.id, unsubscribe_problem)
            return ReceiverResult(applied=0, duplicates=0, kept_id=kept.id)
        addressed = rcpt_to + _returned_path(raw)
        report = parse_report(raw, envelope_to=addressed)
        problem = report.problem
        if problem is None and self.processor.verp_token(addressed) is None:
            # Only a signed address proves notifier sent the message: a forged report must
            # not put arbitrary addresses on the suppression list.
            problem = f"a {report.kind} report not addressed to a valid VERP address: not applied"
        if problem is None:
            applied = duplicates = 0
            try:
                for event in report.events:
                    outcome = await self.processor.apply(event)
                    if outcome.outcome == "duplicate":
                        duplicates += 1
                    else:
                        applied += 1
                return ReceiverResult(applied=applied, duplicates=duplicates, kept_id=None)
            except StoreUnavailable:
                raise
            except Exception as exc:
                # A bug in applying must not lose the report: keep it for a person instead.
                log.exception("applying a %s report failed", report.kind)
                problem = f"applying the report failed: {type(exc).__name__}: {exc}"
        kept = await self.suppressions.keep_unclassified(
            raw=raw, mail_from=mail_from, rcpt_to=rcpt_to, problem=problem, limit=self.keep_limit
        )
        log.warning("inbound mail kept for review as %s: %s", kept.id, problem)
        return ReceiverResult(applied=0, duplicates=0, kept_id=kept.id)


def _returned_path(raw: bytes) -> tuple[str, ...]:
    """The Return-Path of a message returned inside a report (FBL reports carry the VERP there)."""
    try:
        message = email.message_from_bytes(raw)
        found = []
        for part in message.walk():
            if part.get_content_type() not in ("message/rfc822", "text/rfc822-headers"):
                continue
            payload: Any = part.get_payload()
            if isinstance(payload, list) and payload:
                value = payload[0].get("Return-Path")
            else:
                value = email.message_from_string(str(payload or "")).get("Return-Path")
            if value:
                found.append(parseaddr(str(value))[1])
    except (ValueError, LookupError, TypeError, UnicodeError):
        return ()
    return tuple(address for address in found if address)


async def serve_bounces(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Run the bounce receiver until cancelled."""
    if not settings.bounce_domain:
        raise ConfigurationError(
            "BOUNCE_DOMAIN must be set for the bounce receiver: it accepts mail for that "
            "domain only (point the domain's MX at this server)"
        )
    redis = connect_async(settings)
    store = NotificationStore(
        redis, prefix=settings.redis_prefix, retention_seconds=settings.record_retention_seconds
    )
    suppressions = SuppressionStore(redis, prefix=settings.redis_prefix)
    handler = BounceHandler(
        processor=FeedbackProcessor(
            notifications=store, suppressions=suppressions, settings=settings
        ),
        suppressions=suppressions,
        domain=settings.bounce_domain,
        keep_limit=settings.bounce_unclassified_max,
    )
    factory = functools.partial(
        SMTP,
        handler,
        hostname=settings.bounce_domain,
        data_size_limit=settings.bounce_max_message_bytes,
        enable_SMTPUTF8=True,
        decode_data=False,
    )
    loop = asyncio.get_running_loop()
    bind_host = host or settings.bounce_smtp_host
    bind_port = port if port is not None else settings.bounce_smtp_port
    server = await loop.create_server(factory, host=bind_host, port=bind_port)
    log.info("bounce receiver for %s on %s:%s", settings.bounce_domain, bind_host, bind_port)
    try:
        if started is not None:
            started.set()
        await server.serve_forever()
    finally:
        server.close()
        await server.wait_closed()
        await redis.aclose()

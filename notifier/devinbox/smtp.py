"""The development inbox's SMTP side: an aiosmtpd handler that stores every message it accepts."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.controller import Controller

from notifier.bounces.simulator import simulate_feedback
from notifier.devinbox.store import Envelope, MaildirStore

__all__ = ["StoringHandler", "create_controller"]

logger = logging.getLogger("notifier.devinbox")


class StoringHandler:
    """aiosmtpd handler: accepts any sender and recipient, no auth, and stores the DATA."""

    def __init__(self, store: MaildirStore) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # original_content is the DATA byte for byte, before aiosmtpd decodes anything.
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        received = Envelope(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            received_at=datetime.now(UTC),
            helo=session.host_name or "",
        )
        stored = await asyncio.to_thread(self.store.add, envelope=received, raw=raw)
        logger.info(
            "devinbox received %s from %s to %s: %r",
            stored.id,
            received.mail_from or "<>",
            ", ".join(received.rcpt_tos),
            stored.subject,
        )
        # Mailbox simulator: bounce@/soft@/complaint@simulator.example.com answer with reports.
        simulate_feedback(received.mail_from, received.rcpt_tos, raw)
        return "250 Message accepted for delivery"


def create_controller(store: MaildirStore, *, host: str, port: int) -> Controller:
    """An aiosmtpd Controller (its own thread and loop) serving ``store`` on ``host:port``."""
    return Controller(
        StoringHandler(store),
        hostname=host,
        port=port,
        server_hostname="devinbox",
        ident="notifier devinbox",
        enable_SMTPUTF8=True,
        ready_timeout=5.0,
    )

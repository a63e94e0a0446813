"""The dev inbox as a mailbox simulator, like SES's: some addresses answer with real reports.

Mail to ``bounce@simulator.example.com`` gets a hard-bounce DSN (5.1.1), ``soft@`` a soft one
(4.2.2, mailbox full) and ``complaint@`` an ARF report, each sent over SMTP to the message's
envelope sender: with VERP on, that is the bounce receiver, so the whole loop runs locally.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from email.utils import formatdate, make_msgid

import aiosmtplib

from notifier.errors import ConfigurationError
from notifier.settings import load_settings

__all__ = ["SIMULATOR_DOMAIN", "build_arf", "build_dsn", "simulate_feedback"]

log = logging.getLogger("notifier.devinbox")

SIMULATOR_DOMAIN = "simulator.example.com"
_KINDS = {"bounce": ("5.1.1", "550"), "soft": ("4.2.2", "452")}
_PENDING: set[asyncio.Task[None]] = set()


def _headers_of(original: bytes) -> str:
    head = original.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    return head.decode("utf-8", "replace").strip() + "\n"


def _report(*, kind: str, to: str, subject: str, text: str, fields: str, returned: str) -> bytes:
    boundary = f"=_simulator_{uuid.uuid4().hex}"
    report_part = "delivery-status" if kind == "delivery-status" else "feedback-report"
    body = f"""From: Mail Delivery System <MAILER-DAEMON@{SIMULATOR_DOMAIN}>
To: {to}
Subject: {subject}
Date: {formatdate(localtime=False)}
Message-ID: {make_msgid(domain=SIMULATOR_DOMAIN)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type={kind}; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

{text}
--{boundary}
Content-Type: message/{report_part}

{fields}
--{boundary}
Content-Type: text/rfc822-headers

{returned}
--{boundary}--
"""
    return body.replace("\n", "\r\n").encode("utf-8")


def build_dsn(*, recipient: str, return_path: str, original: bytes, status: str) -> bytes:
    """An RFC 3464 DSN (as Postfix writes them) saying ``recipient`` failed with ``status``."""
    code = "550" if status.startswith("5") else "452"
    reason = "User unknown" if status.startswith("5") else "Mailbox full"
    fields = (
        f"Reporting-MTA: dns; {SIMULATOR_DOMAIN}\n\n"
        f"Final-Recipient: rfc822; {recipient}\n"
        f"Original-Recipient: rfc822; {recipient}\n"
        "Action: failed\n"
        f"Status: {status}\n"
        f"Remote-MTA: dns; {SIMULATOR_DOMAIN}\n"
        f"Diagnostic-Code: smtp; {code} {status} <{recipient}>: {reason}\n"
    )
    return _report(
        kind="delivery-status",
        to=return_path,
        subject="Undelivered Mail Returned to Sender",
        text=f"This is the mailbox simulator.\n\n<{recipient}>: {code} {status} {reason}\n",
        fields=fields,
        returned=_headers_of(original),
    )


def build_arf(*, recipient: str, return_path: str, original: bytes) -> bytes:
    """An RFC 5965 abuse report about ``original``, as a mailbox provider's feedback loop."""
    fields = (
        "Feedback-Type: abuse\n"
        "User-Agent: notifier-simulator/1.0\n"
        "Version: 1\n"
        f"Original-Mail-From: <{return_path}>\n"
        f"Original-Rcpt-To: <{recipient}>\n"
        f"Reported-Domain: {SIMULATOR_DOMAIN}\n"
    )
    return _report(
        kind="feedback-report",
        to=return_path,
        subject="Abuse report",
        text=f"This is an abuse report from the mailbox simulator for {recipient}.\n",
        fields=fields,
        returned=f"Return-Path: <{return_path}>\n" + _headers_of(original),
    )


def simulated_reports(
    mail_from: str, rcpt_tos: Sequence[str], original: bytes
) -> list[tuple[str, bytes]]:
    """The reports the simulator answers a message with: (recipient, raw report) pairs."""
    reports = []
    for rcpt in rcpt_tos:
        local, _, domain = rcpt.rpartition("@")
        if domain.lower() != SIMULATOR_DOMAIN or not mail_from:
            continue
        kind = local.lower()
        if kind in _KINDS:
            raw = build_dsn(
                recipient=rcpt, return_path=mail_from, original=original, status=_KINDS[kind][0]
            )
        elif kind == "complaint":
            raw = build_arf(recipient=rcpt, return_path=mail_from, original=original)
        else:
            continue
        reports.append((rcpt, raw))
    return reports


async def _send(reports: list[tuple[str, bytes]], *, to: str) -> None:
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        log.warning("simulator: cannot read settings, no report sent: %s", exc)
        return
    for recipient, raw in reports:
        try:
            # The null sender, as a real DSN has (aiosmtplib.send() insists on a sender).
            client = aiosmtplib.SMTP(
                hostname=settings.bounce_smtp_host, port=settings.bounce_smtp_port, timeout=10
            )
            async with client:
                await client.sendmail("", [to], raw)
            log.info("simulator: report for %s sent to %s", recipient, to)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning(
                "simulator: the bounce receiver at %s:%s did not take the report for %s: %s",
                settings.bounce_smtp_host,
                settings.bounce_smtp_port,
                recipient,
                exc,
            )


def simulate_feedback(mail_from: str, rcpt_tos: Sequence[str], original: bytes) -> None:
    """Send the simulator's reports for a message just received, in the background."""
    reports = simulated_reports(mail_from, rcpt_tos, original)
    if not reports:
        return
    task = asyncio.get_running_loop().create_task(_send(reports, to=mail_from))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)

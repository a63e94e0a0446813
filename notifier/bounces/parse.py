"""Reading bounce and complaint mail: RFC 3464 DSNs, RFC 5965 ARF reports, and the rest.

Standard reports are read with the stdlib ``email`` package (Status, Action, Diagnostic-Code
per recipient); non-standard bounces from older MTAs go through flufl.bounce's detectors.
What none of them understands comes back with ``problem`` set, to be kept for a person.
"""

from __future__ import annotations

import email
import email.message
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from email.utils import parseaddr

from flufl.bounce import all_failures

from notifier.bounces.events import FeedbackEvent, FeedbackKind, normalize_address, status_class

__all__ = ["ParsedReport", "parse_report"]

_MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ParsedReport:
    """What one inbound message said: events, or why it could not be understood."""

    events: tuple[FeedbackEvent, ...]
    kind: str
    problem: str | None = None


def parse_report(raw: bytes, *, envelope_to: tuple[str, ...] = ()) -> ParsedReport:
    """Classify one inbound message; never raises for malformed input."""
    try:
        message = email.message_from_bytes(raw)
    except Exception as exc:  # the parser is lenient; this is a last resort, not control flow
        return ParsedReport((), "unreadable", f"the message could not be parsed: {exc}")
    report_id = _report_id(message, raw)
    content_type = message.get_content_type()
    report_type = (message.get_param("report-type") or "").__str__().lower()
    try:
        if content_type == "multipart/report" and report_type == "feedback-report":
            return _arf(message, report_id, envelope_to)
        if _first_part(message, "message/delivery-status") is not None:
            return _dsn(message, report_id, envelope_to)
        return _heuristic(message, report_id, envelope_to)
    except (ValueError, LookupError, TypeError, UnicodeError) as exc:
        return ParsedReport((), "unreadable", f"{type(exc).__name__}: {exc}")


def _report_id(message: email.message.Message, raw: bytes) -> str:
    own = message.get("Message-ID")
    return str(own).strip() if own else "sha256:" + hashlib.sha256(raw).hexdigest()


def _walk(message: email.message.Message) -> Iterator[email.message.Message]:
    yield from message.walk()


def _first_part(message: email.message.Message, content_type: str) -> email.message.Message | None:
    for part in _walk(message):
        if part.get_content_type() == content_type:
            return part
    return None


def _field_blocks(part: email.message.Message) -> list[email.message.Message]:
    """The header blocks of a ``message/delivery-status`` or ``message/feedback-report`` part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, email.message.Message)]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [HeaderParser().parsestr(block) for block in blocks if block.strip()]


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = _SPACE.sub(" ", str(value)).strip()
    return text or None


def _typed_address(value: object) -> str | None:
    """The address of ``rfc822; user@example.com`` (a Final-Recipient or Original-Rcpt-To)."""
    text = _clean(value)
    if not text:
        return None
    kind, sep, address = text.partition(";")
    if sep and kind.strip().lower() not in ("rfc822", "utf-8"):
        return None
    candidate = (address if sep else kind).strip()
    candidate = parseaddr(candidate)[1] or candidate
    try:
        return normalize_address(candidate)
    except ValueError:
        return None


def _original_message_id(message: email.message.Message) -> str | None:
    """The Message-ID of the message being reported on, from its returned copy or headers."""
    for part in _walk(message):
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                found = inner[0].get("Message-ID")
                if found:
                    return str(found).strip()
        elif content_type == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            match = _MESSAGE_ID.search(text)
            if match:
                return match.group(1)
    return None


def _dsn(
    message: email.message.Message, report_id: str, envelope_to: tuple[str, ...]
) -> ParsedReport:
    original = _original_message_id(message)
    events: list[FeedbackEvent] = []
    for part in _walk(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = _field_blocks(part)
        # The first block is per message (Reporting-MTA ...); the rest are per recipient.
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            recipient = _typed_address(block.get("Final-Recipient")) or _typed_address(
                block.get("Original-Recipient")
            )
            action = (_clean(block.get("Action")) or "").lower()
            diagnostic = _clean(block.get("Diagnostic-Code"))
            status = status_class(_clean(block.get("Status")), diagnostic)
            kind: FeedbackKind
            if action.startswith("delayed"):
                kind = "delayed"
            elif action.startswith(("failed", "error")):
                kind = "soft_bounce" if status and status.startswith("4") else "hard_bounce"
            else:
                continue  # delivered, relayed, expanded: not a failure
            if recipient is None and not envelope_to:
                continue
            events.append(
                FeedbackEvent(
                    kind=kind,
                    recipient=recipient,
                    source="dsn",
                    dedupe_key=f"dsn|{report_id}|{recipient}|{kind}",
                    status=status,
                    diagnostic=diagnostic,
                    message_id=original,
                    envelope_to=envelope_to,
                    details={"reporting_mta": _clean(blocks[0].get("Reporting-MTA"))},
                )
            )
    if not events:
        return ParsedReport((), "dsn", "a delivery-status report without a failed recipient")
    return ParsedReport(tuple(events), "dsn")


def _arf(
    message: email.message.Message, report_id: str, envelope_to: tuple[str, ...]
) -> ParsedReport:
    part = _first_part(message, "message/feedback-report")
    if part is None:
        return ParsedReport((), "arf", "a feedback report without its message/feedback-report")
    blocks = _field_blocks(part)
    fields = blocks[0] if blocks else email.message.Message()
    feedback_type = (_clean(fields.get("Feedback-Type")) or "").lower()
    if feedback_type not in ("abuse", "fraud", "virus", "other", ""):
        return ParsedReport((), "arf", f"feedback type {feedback_type!r} is not a complaint")
    recipients = [
        found
        for value in fields.get_all("Original-Rcpt-To") or []
        if (found := _typed_address(value)) is not None
    ]
    if not recipients:
        recipients = _returned_recipients(message)
    if not recipients and not envelope_to:
        return ParsedReport((), "arf", "a complaint that names no recipient")
    original = _original_message_id(message)
    events = tuple(
        FeedbackEvent(
            kind="complaint",
            recipient=recipient,
            source="arf",
            dedupe_key=f"arf|{report_id}|{recipient}",
            diagnostic=feedback_type or "abuse",
            message_id=original,
            envelope_to=envelope_to,
            details={"user_agent": _clean(fields.get("User-Agent"))},
        )
        for recipient in (list[str | None](recipients) or [None])
    )
    return ParsedReport(events, "arf")


def _returned_recipients(message: email.message.Message) -> list[str]:
    """The To of the returned message, when the report has no Original-Rcpt-To."""
    for part in _walk(message):
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                address = parseaddr(str(inner[0].get("To", "")))[1]
                try:
                    return [normalize_address(address)]
                except ValueError:
                    return []
    return []


def _heuristic(
    message: email.message.Message, report_id: str, envelope_to: tuple[str, ...]
) -> ParsedReport:
    temporary, permanent = all_failures(message)
    if not temporary and not permanent:
        return ParsedReport((), "unknown", "not a bounce or complaint any detector recognises")
    text = message.as_string()
    match = _MESSAGE_ID.search(text.split("\n", 1)[1] if "\n" in text else "")
    original = _original_message_id(message) or (match.group(1) if match else None)
    diagnostic = _clean(_first_text(message))
    events: list[FeedbackEvent] = []
    for kind, found in (("hard_bounce", permanent), ("soft_bounce", temporary)):
        for raw_address in sorted(found):
            try:
                recipient = normalize_address(raw_address.decode("ascii", "replace"))
            except ValueError:
                continue
            events.append(
                FeedbackEvent(
                    kind=kind,  # type: ignore[arg-type]
                    recipient=recipient,
                    source="heuristic",
                    dedupe_key=f"heuristic|{report_id}|{recipient}|{kind}",
                    status=status_class(None, diagnostic),
                    diagnostic=diagnostic[:500] if diagnostic else None,
                    message_id=original if original != str(message.get("Message-ID")) else None,
                    envelope_to=envelope_to,
                )
            )
    if not events:
        return ParsedReport((), "unknown", "a bounce whose addresses could not be read")
    return ParsedReport(tuple(events), "heuristic")


def _first_text(message: email.message.Message) -> str | None:
    for part in _walk(message):
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return raw.decode("utf-8", "replace")
    return None

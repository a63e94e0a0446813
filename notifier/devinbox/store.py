"""The development inbox's storage: every received message in a Maildir, envelope included.

Each file is the message exactly as received, preceded by ``X-Devinbox-*`` header lines that
record the SMTP envelope and the receive time, so the inbox survives restarts.
"""

from __future__ import annotations

import email
import email.policy
import functools
import mailbox
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import getaddresses
from pathlib import Path

from notifier.errors import NotifierError

__all__ = [
    "Attachment",
    "Envelope",
    "MaildirStore",
    "MessageNotFound",
    "StoredMessage",
]

_MAIL_FROM = b"X-Devinbox-Mail-From"
_RCPT_TO = b"X-Devinbox-Rcpt-To"
_HELO = b"X-Devinbox-Helo"
#: Always the last envelope line written, so parsing knows where the received message begins.
_RECEIVED_AT = b"X-Devinbox-Received-At"


class MessageNotFound(NotifierError, LookupError):
    """No stored message with that id."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"no message with id {message_id!r}")
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP client said around the message: MAIL FROM, RCPT TO, HELO, and when."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: datetime
    helo: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One downloadable part of a message; ``index`` is its position among the attachments."""

    index: int
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class StoredMessage:
    """A received message: its Maildir key, envelope and the bytes exactly as received."""

    id: str
    envelope: Envelope
    raw: bytes

    @functools.cached_property
    def email(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def header(self, name: str) -> str:
        """The decoded value of header ``name``, or an empty string."""
        value = self.email.get(name)
        return "" if value is None else str(value)

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def sender(self) -> str:
        """The From header, falling back to the envelope sender."""
        return self.header("From") or self.envelope.mail_from

    @property
    def recipients(self) -> str:
        """The To header, falling back to the envelope recipients."""
        return self.header("To") or ", ".join(self.envelope.rcpt_tos)

    def decoded_headers(self) -> list[tuple[str, str]]:
        """Every header in order, with encoded words decoded."""
        return [(name, str(value)) for name, value in self.email.items()]

    @property
    def text_body(self) -> str | None:
        return _body_text(self.email, "plain")

    @property
    def html_body(self) -> str | None:
        return _body_text(self.email, "html")

    def attachments(self) -> list[Attachment]:
        """The parts that are neither the text nor the HTML body, in MIME order."""
        bodies = {
            id(part)
            for part in (
                self.email.get_body(preferencelist=("plain",)),
                self.email.get_body(preferencelist=("html",)),
            )
            if part is not None
        }
        found: list[Attachment] = []
        for part in _leaf_parts(self.email):
            if id(part) in bodies:
                continue
            found.append(
                Attachment(
                    index=len(found),
                    filename=part.get_filename() or f"part-{len(found) + 1}",
                    content_type=part.get_content_type(),
                    data=_part_bytes(part),
                )
            )
        return found

    @property
    def body_source(self) -> bytes:
        """The raw bytes after the header block."""
        for separator in (b"\r\n\r\n", b"\n\n"):
            _, found, body = self.raw.partition(separator)
            if found:
                return body
        return b""


class MaildirStore:
    """Messages in a Maildir directory; safe to use from the SMTP and HTTP threads at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # mailbox.Maildir(create=True) only creates cur/new/tmp when the directory itself is new.
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._maildir = mailbox.Maildir(path, factory=None, create=False)
        self._lock = threading.Lock()
        # Stored files never change, so a parsed message stays valid until it is deleted.
        self._cache: dict[str, StoredMessage] = {}

    def add(self, *, envelope: Envelope, raw: bytes) -> StoredMessage:
        """Store ``raw`` (the DATA as received) with its envelope; returns the stored message."""
        data = _envelope_lines(envelope) + raw
        with self._lock:
            key = self._maildir.add(data)
            stored = StoredMessage(id=key, envelope=envelope, raw=raw)
            self._cache[key] = stored
        return stored

    def get(self, message_id: str) -> StoredMessage:
        with self._lock:
            return self._load(message_id)

    def list(self) -> list[StoredMessage]:
        """Every message, newest first."""
        with self._lock:
            keys = set(self._maildir.keys())
            for gone in self._cache.keys() - keys:
                del self._cache[gone]
            messages = []
            for key in keys:
                try:
                    messages.append(self._load(key))
                except MessageNotFound:  # deleted by another process since keys() ran
                    continue
        messages.sort(key=lambda m: (m.envelope.received_at, m.id), reverse=True)
        return messages

    def __len__(self) -> int:
        with self._lock:
            return len(self._maildir)

    def __iter__(self) -> Iterator[StoredMessage]:
        return iter(self.list())

    def delete(self, message_id: str) -> None:
        with self._lock:
            try:
                self._maildir.remove(message_id)
            except KeyError:
                raise MessageNotFound(message_id) from None
            self._cache.pop(message_id, None)

    def delete_all(self) -> int:
        """Remove every message; returns how many were removed."""
        with self._lock:
            removed = 0
            # Maildir iterates over messages, not keys; remove() must not race the listing.
            for key in list(self._maildir.keys()):
                try:
                    self._maildir.remove(key)
                except KeyError:
                    continue
                removed += 1
            self._cache.clear()
            return removed

    def _load(self, message_id: str) -> StoredMessage:
        cached = self._cache.get(message_id)
        if cached is not None:
            return cached
        try:
            data = self._maildir.get_bytes(message_id)
        except (KeyError, FileNotFoundError):
            raise MessageNotFound(message_id) from None
        split = _split_envelope(data)
        if split is None:
            envelope, raw = _bare_envelope(data, self._maildir.get_message(message_id)), data
        else:
            envelope, raw = split
        stored = StoredMessage(id=message_id, envelope=envelope, raw=raw)
        self._cache[message_id] = stored
        return stored


def _envelope_lines(envelope: Envelope) -> bytes:
    lines = [_MAIL_FROM + b": <" + envelope.mail_from.encode() + b">"]
    lines.extend(_RCPT_TO + b": <" + rcpt.encode() + b">" for rcpt in envelope.rcpt_tos)
    if envelope.helo:
        lines.append(_HELO + b": " + envelope.helo.encode())
    received = envelope.received_at.astimezone(UTC).isoformat(timespec="microseconds")
    lines.append(_RECEIVED_AT + b": " + received.encode())
    return b"".join(line + b"\r\n" for line in lines)


def _split_envelope(data: bytes) -> tuple[Envelope, bytes] | None:
    """Separate our ``X-Devinbox-*`` lines from the message; None if the file has none."""
    mail_from = ""
    rcpt_tos: list[str] = []
    helo = ""
    position = 0
    while True:
        end = data.find(b"\n", position)
        if end < 0:
            return None
        line = data[position:end].rstrip(b"\r")
        name, _, value = line.partition(b": ")
        text = value.decode("utf-8", "replace")
        position = end + 1
        if name == _MAIL_FROM:
            mail_from = text.removeprefix("<").removesuffix(">")
        elif name == _RCPT_TO:
            rcpt_tos.append(text.removeprefix("<").removesuffix(">"))
        elif name == _HELO:
            helo = text
        elif name == _RECEIVED_AT:
            try:
                received_at = datetime.fromisoformat(text)
            except ValueError:
                return None
            envelope = Envelope(
                mail_from=mail_from, rcpt_tos=tuple(rcpt_tos), received_at=received_at, helo=helo
            )
            return envelope, data[position:]
        else:
            return None


def _bare_envelope(data: bytes, delivered: mailbox.MaildirMessage) -> Envelope:
    """A message put into the Maildir by something else: take the envelope from its headers."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    senders = getaddresses(message.get_all("From", []))
    rcpts = getaddresses(message.get_all("To", []) + message.get_all("Cc", []))
    return Envelope(
        mail_from=senders[0][1] if senders else "",
        rcpt_tos=tuple(address for _, address in rcpts if address),
        received_at=datetime.fromtimestamp(delivered.get_date(), UTC),
    )


def _body_text(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    return _text_of(part)


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = data.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n")


def _leaf_parts(part: Message) -> Iterator[Message]:
    """Every non-multipart part; an attached message (message/rfc822) counts as one leaf."""
    if part.get_content_maintype() == "multipart":
        payload = part.get_payload()
        if isinstance(payload, list):
            for child in payload:
                if isinstance(child, Message):
                    yield from _leaf_parts(child)
        return
    yield part


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    inner = part.get_payload()
    if isinstance(inner, list):  # message/rfc822: the attached message itself
        return b"".join(m.as_bytes() for m in inner if isinstance(m, Message))
    return b""

"""Building RFC 5322 / MIME messages and their SMTP envelope from validated addresses.

Pure code over the standard library ``email`` package; nothing here touches the network.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import email.utils
import functools
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message, MIMEPart
from typing import Any

from notifier.compose.addresses import Address, check_custom_headers, check_header_value
from notifier.compose.headers import (
    address_header,
    attachment_disposition,
    fold,
    make_message_id,
    unstructured_header,
)
from notifier.errors import InvalidNotification

__all__ = ["AttachmentData", "OutgoingEmail", "build_email", "make_message_id"]

#: MIME structure headers whose parsed form is cached (see :class:`_SMTPPolicy`).
_STRUCTURAL_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
#: Multipart boundaries: "=_" cannot occur in base64 or quoted-printable text (the only body
#: encodings used here) and neither boundary is a prefix of the other, so one random token per
#: process is as safe as one per message, and keeps the Content-Type values cacheable.
_BOUNDARY_TOKEN = secrets.token_hex(12)


class _SMTPPolicy(email.policy.EmailPolicy):
    """``email.policy.SMTP`` that parses each distinct MIME structure header only once.

    The generator re-reads Content-Type and Content-Transfer-Encoding of every part several
    times while serializing, and the stock policy parses them anew each time; our values come
    from a small fixed set, so the parsed (immutable) header objects are shared.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if name.lower() in _STRUCTURAL_HEADERS and not hasattr(value, "name"):
            return _parse_structural_header(name, value)
        return super().header_fetch_parse(name, value)


@functools.lru_cache(maxsize=256)
def _parse_structural_header(name: str, value: str) -> Any:
    # Keyed without the policy: the generator clones it per part, and parsing does not
    # depend on it (only the header factory does, which all our policies share).
    return email.policy.SMTP.header_fetch_parse(name, value)


#: SMTP line endings, and header values stored pre-encoded and pre-folded (``set_raw``) and
#: written verbatim: the email package's own header folding costs more than the rest of the
#: build, and it is redone on every serialization. Bodies are always 7-bit clean.
_POLICY = _SMTPPolicy(linesep="\r\n", cte_type="7bit", refold_source="none")
#: The same, writing headers as raw UTF-8: only for messages whose addresses have a non-ASCII
#: local part, which cannot be expressed in ASCII headers and need an SMTPUTF8 server anyway.
_POLICY_UTF8 = _POLICY.clone(utf8=True)
#: A MIME type or subtype token (RFC 2045).
_MIME_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")


@dataclass(frozen=True, slots=True)
class AttachmentData:
    """A file to attach: its name as shown to the recipient, MIME type and raw bytes."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A built message plus the envelope to send it with.

    ``recipients`` is the RCPT TO list (to, cc and bcc in that order, deduplicated); Bcc
    addresses appear only there, never in the message headers.
    """

    message: EmailMessage
    envelope_from: str
    recipients: tuple[str, ...]
    message_id: str
    #: Applied to the serialized message (DKIM signing): the exact bytes sent are signed.
    signer: Callable[[bytes], bytes] | None = None

    @property
    def requires_smtputf8(self) -> bool:
        """True when an envelope address has a non-ASCII local part: the server needs SMTPUTF8."""
        return not self.envelope_from.isascii() or not all(r.isascii() for r in self.recipients)

    def as_bytes(self) -> bytes:
        """The message with CRLF line endings, ready for SMTP DATA (signed, with a signer)."""
        data = self.message.as_bytes()
        return data if self.signer is None else self.signer(data)


def build_email(
    *,
    notification_id: str,
    sender: Address,
    to: Sequence[Address],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[Address] = (),
    bcc: Sequence[Address] = (),
    reply_to: Sequence[Address] = (),
    headers: Mapping[str, str] | None = None,
    attachments: Sequence[AttachmentData] = (),
    date: datetime | None = None,
    domain: str | None = None,
    list_unsubscribe: Sequence[str] = (),
    signer: Callable[[bytes], bytes] | None = None,
) -> OutgoingEmail:
    """Build the MIME message and its envelope.

    text only gives ``text/plain``; text and a non-empty ``html`` give ``multipart/alternative``;
    attachments wrap either in ``multipart/mixed``. The Message-ID domain defaults to the
    sender's. ``list_unsubscribe`` URIs (https first, then mailto) give the RFC 2369
    List-Unsubscribe header and RFC 8058's one-click List-Unsubscribe-Post. ``signer`` (DKIM)
    is applied to the serialized bytes. Raises :class:`HeaderInjection` for CR/LF in any
    header-bound value and :class:`InvalidNotification` for other unusable input.
    """
    check_header_value(subject, field="subject")
    custom_headers = check_custom_headers(headers or {}, field="headers")
    _check_address(sender, field="sender")
    for name, group in (("to", to), ("cc", cc), ("bcc", bcc), ("reply_to", reply_to)):
        for index, address in enumerate(group):
            _check_address(address, field=f"{name}[{index}]")
    if not (to or cc or bcc):
        raise InvalidNotification("a message needs at least one recipient", field="to")
    if date is None:
        date = datetime.now(UTC)
    elif date.utcoffset() is None:
        raise InvalidNotification("date must be timezone-aware", field="date")
    message_id = make_message_id(
        notification_id, domain if domain is not None else sender.addr_spec.rpartition("@")[2]
    )

    shown = (sender, *to, *cc, *reply_to)
    utf8 = not all(address.envelope.isascii() for address in shown)
    body = _build_body(text, html, attachments)
    message = EmailMessage(policy=_POLICY_UTF8 if utf8 else _POLICY)
    message.set_raw("Message-ID", message_id)
    message.set_raw("Date", email.utils.format_datetime(date))
    message.set_raw("From", address_header("From", (sender,)))
    if to:
        message.set_raw("To", address_header("To", to))
    if cc:
        message.set_raw("Cc", address_header("Cc", cc))
    if reply_to:
        message.set_raw("Reply-To", address_header("Reply-To", reply_to))
    message.set_raw("Subject", unstructured_header("Subject", subject))
    message.set_raw("MIME-Version", "1.0")
    for name, value in custom_headers.items():
        message.set_raw(name, unstructured_header(name, value))
    if list_unsubscribe:
        for uri in list_unsubscribe:
            check_header_value(uri, field="list_unsubscribe")
            if not uri.isascii() or any(c in uri for c in "<> ,"):
                raise InvalidNotification(
                    f"unsubscribe URI {uri!r} must be ASCII without '<', '>', ',' or spaces",
                    field="list_unsubscribe",
                )
        message.set_raw(
            "List-Unsubscribe",
            fold("List-Unsubscribe", [f"<{uri}>," for uri in list_unsubscribe])[:-1],
        )
        if any(uri.startswith("https://") or uri.startswith("http://") for uri in list_unsubscribe):
            message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    for name, value in body.raw_items():
        message.set_raw(name, value)
    message.set_payload(body.get_payload())

    recipients: dict[str, str] = {}
    for address in (*to, *cc, *bcc):
        envelope = address.envelope
        recipients.setdefault(envelope.lower(), envelope)
    return OutgoingEmail(
        message=message,
        envelope_from=sender.envelope,
        recipients=tuple(recipients.values()),
        message_id=message_id,
        signer=signer,
    )


def _check_address(address: Address, *, field: str) -> None:
    check_header_value(address.display_name, field=f"{field}.display_name")
    check_header_value(address.addr_spec, field=field)
    if "@" not in address.addr_spec:
        raise InvalidNotification(f"{address.addr_spec!r} is not an email address", field=field)


def _build_body(text: str, html: str | None, attachments: Sequence[AttachmentData]) -> MIMEPart:
    body = _text_part(text, subtype="plain", field="text")
    if html:
        body = _multipart("alternative", [body, _text_part(html, subtype="html", field="html")])
    if attachments:
        parts = [
            _attachment_part(attachment, field=f"attachments[{index}]")
            for index, attachment in enumerate(attachments)
        ]
        body = _multipart("mixed", [body, *parts])
    return body


def _text_part(content: str, *, subtype: str, field: str) -> MIMEPart:
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNotification(f"{field} is not encodable as UTF-8: {exc}", field=field) from exc
    # Quoted-printable for (nearly) ASCII text, base64 where it is shorter, as for Cyrillic.
    # Never 7bit/8bit: then no body line can reach 998 characters or look like our boundaries.
    use_qp = len(data) - len(content) <= len(content) // 10
    # Canonical CRLF line breaks; bytes.splitlines, unlike str's, splits only on CR and LF.
    data = b"\r\n".join(data.splitlines()) + b"\r\n"
    part = MIMEPart(policy=_POLICY)
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    if use_qp:
        part.set_raw("Content-Transfer-Encoding", "quoted-printable")
        part.set_payload(binascii.b2a_qp(data, istext=True).decode("ascii"))
    else:
        part.set_raw("Content-Transfer-Encoding", "base64")
        part.set_payload(base64.encodebytes(data).decode("ascii"))
    return part


def _multipart(subtype: str, parts: list[MIMEPart]) -> MIMEPart:
    boundary = f"=_{subtype}.{_BOUNDARY_TOKEN}"
    part = MIMEPart(policy=_POLICY)
    part.set_raw("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    payload: list[Message[str, str] | str] = [*parts]
    part.set_payload(payload)
    return part


def _attachment_part(attachment: AttachmentData, *, field: str) -> MIMEPart:
    filename = check_header_value(attachment.filename, field=f"{field}.filename")
    if not filename.strip():
        raise InvalidNotification("attachment filename is empty", field=f"{field}.filename")
    maintype, _, subtype = attachment.content_type.strip().partition("/")
    if not (_MIME_TOKEN.fullmatch(maintype) and _MIME_TOKEN.fullmatch(subtype)):
        raise InvalidNotification(
            f"content type {attachment.content_type!r} is not of the form type/subtype",
            field=f"{field}.content_type",
        )
    maintype, subtype = maintype.lower(), subtype.lower()
    if maintype in ("multipart", "message"):
        # Such parts may not be base64-encoded (RFC 2046), and raw ones could break the MIME tree.
        raise InvalidNotification(
            f"cannot attach {maintype}/* content; use application/octet-stream",
            field=f"{field}.content_type",
        )
    part = MIMEPart(policy=_POLICY)
    part.set_raw("Content-Type", f"{maintype}/{subtype}")
    part.set_raw("Content-Transfer-Encoding", "base64")
    part.set_raw("Content-Disposition", attachment_disposition(filename))
    part.set_payload(base64.encodebytes(attachment.content).decode("ascii"))
    return part

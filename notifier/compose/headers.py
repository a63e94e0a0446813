"""Header values for outgoing mail: Message-IDs, address lists, RFC 2047 encoded words,
RFC 2231 filenames, folded to RFC 5322 line lengths (pure code, written pre-folded)."""

from __future__ import annotations

import binascii
import hashlib
import re
import urllib.parse
from collections.abc import Sequence

import idna

from notifier.compose.addresses import Address
from notifier.errors import InvalidNotification

__all__ = [
    "address_header",
    "attachment_disposition",
    "fold",
    "make_message_id",
    "unstructured_header",
]

#: RFC 5322 ``atext`` except "%" (our escape character); "." is escaped too, which keeps
#: the left part a valid ``dot-atom-text`` without special-casing leading or doubled dots.
_MSGID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$&'*+\-/=?^_`{|}~]")
#: Longer ids are replaced by their SHA-256 so the header stays short; still deterministic.
_MSGID_MAX_LEFT = 128
_DOMAIN_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
#: A display name made only of RFC 5322 atoms can be written without quotes.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+")
#: Printable ASCII that may be written in a header as is.
_PLAIN_ASCII = re.compile(r"[\x20-\x7e]*")
#: RFC 5322 says lines SHOULD stay within 78 characters and MUST within 998.
_FOLD_WIDTH = 78
_LONGEST_PIECE = 900
#: UTF-8 bytes per RFC 2047 encoded word: 52 base64 characters, a 64-character word.
_EW_BYTES = 39
_EW_PREFIX = "=?utf-8?b?"
#: Value characters per RFC 2231 continuation segment, and the longest plainly quoted filename.
_PARAM_SEGMENT = 48
_PARAM_PLAIN = 60
#: RFC 2231 ``attribute-char``s besides letters and digits, left unescaped.
_PARAM_SAFE = "!#$&+-.^_`|~"


def make_message_id(notification_id: str, domain: str) -> str:
    """Return the Message-ID for a notification: the same id always gives the same value.

    Characters not allowed in a msg-id are %-escaped (UTF-8), so distinct ids stay distinct.
    An IDN ``domain`` is IDNA-encoded.
    """
    if not notification_id:
        raise InvalidNotification("notification id is empty", field="notification_id")
    left = _MSGID_UNSAFE.sub(_percent_escape, notification_id)
    if len(left) > _MSGID_MAX_LEFT:
        left = hashlib.sha256(notification_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<{left}@{_ascii_hostname(domain)}>"


def attachment_disposition(filename: str) -> str:
    """``attachment`` with the filename quoted, or RFC 2231-encoded when not short plain ASCII."""
    if len(filename) <= _PARAM_PLAIN and _PLAIN_ASCII.fullmatch(filename):
        escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
        return fold("Content-Disposition", ["attachment;", f'filename="{escaped}"'])
    segments: list[str] = []
    current = ""
    for char in filename:
        quoted = urllib.parse.quote(char, safe=_PARAM_SAFE, encoding="utf-8")
        if current and len(current) + len(quoted) > _PARAM_SEGMENT:
            segments.append(current)
            current = ""
        current += quoted
    segments.append(current)
    if len(segments) == 1:
        params = [f"filename*=utf-8''{segments[0]}"]
    else:
        params = [f"filename*{index}*={segment}" for index, segment in enumerate(segments)]
        params[0] = f"filename*0*=utf-8''{segments[0]}"
    pieces = ["attachment;", *(f"{param};" for param in params[:-1]), params[-1]]
    return fold("Content-Disposition", pieces)


def address_header(name: str, addresses: Sequence[Address]) -> str:
    """An address-list header value; addresses in their envelope (ASCII domain) form."""
    pieces: list[str] = []
    for address in addresses:
        if address.display_name:
            pieces.extend(_phrase(address.display_name))
            pieces.append(f"<{address.envelope}>,")
        else:
            pieces.append(f"{address.envelope},")
    pieces[-1] = pieces[-1][:-1]
    return fold(name, pieces)


def _phrase(name: str) -> list[str]:
    """A display name as atoms, one quoted string, or RFC 2047 encoded words."""
    if len(name) <= _LONGEST_PIECE and "=?" not in name and _PLAIN_ASCII.fullmatch(name):
        if _ATOMS.fullmatch(name):
            return name.split()
        return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _encoded_words(name)


def unstructured_header(name: str, value: str) -> str:
    """An unstructured value (Subject, X- headers): as is when plain ASCII, else encoded words."""
    if "=?" not in value and _PLAIN_ASCII.fullmatch(value):
        pieces = value.split(" ")
        if all(len(piece) <= _LONGEST_PIECE for piece in pieces):
            return fold(name, pieces)
    return fold(name, _encoded_words(value))


def _encoded_words(text: str) -> list[str]:
    """Split ``text`` into base64 RFC 2047 encoded words without cutting a UTF-8 sequence."""
    data = text.encode("utf-8")
    words: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + _EW_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        encoded = binascii.b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"{_EW_PREFIX}{encoded}?=")
        start = end
    return words or [""]


def fold(name: str, pieces: Sequence[str]) -> str:
    """Join ``pieces`` with spaces, turning a space into CRLF+space where a line would be long.

    Unfolding (removing the CRLFs) gives back exactly the space-joined text. Empty pieces stand
    for runs of spaces and are never folded before, so no line is whitespace only.
    """
    out = [pieces[0]]
    width = len(name) + 2 + len(pieces[0])
    for piece in pieces[1:]:
        if piece and width + 1 + len(piece) > _FOLD_WIDTH:
            out.append("\r\n ")
            width = 1 + len(piece)
        else:
            out.append(" ")
            width += 1 + len(piece)
        out.append(piece)
    return "".join(out)


def _percent_escape(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8", "surrogatepass"))


def _ascii_hostname(domain: str) -> str:
    hostname = domain.strip().rstrip(".")
    if not hostname.isascii():
        try:
            hostname = idna.encode(hostname, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidNotification(f"invalid domain {domain!r}: {exc}", field="domain") from exc
    labels = hostname.split(".")
    if not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        raise InvalidNotification(f"invalid domain {domain!r} for a Message-ID", field="domain")
    return hostname.lower()

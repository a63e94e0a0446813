"""VERP envelope senders: ``bounces+<token>@BOUNCE_DOMAIN``, the token HMAC-signed.

The token names the notification and (when the message had one envelope recipient) a digest
of that recipient, so a bounce addressed to it maps back to both without any stored state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

__all__ = ["VERP_LOCAL_PREFIX", "VerpToken", "bounce_address", "parse_bounce_address"]

#: The local part before ``+``: everything else at the bounce domain is refused.
VERP_LOCAL_PREFIX = "bounces"

_VERSION_UUID = 1  # the id is a canonical UUID, packed into 16 bytes
_VERSION_TEXT = 2  # any other id, UTF-8 with a one-byte length
_DIGEST_BYTES = 6
_MAC_BYTES = 10
_NO_RECIPIENT = b"\x00" * _DIGEST_BYTES


@dataclass(frozen=True, slots=True)
class VerpToken:
    """What a verified token says: the notification id and the recipient's digest, if any."""

    notification_id: str
    recipient_digest: bytes | None

    def matches(self, recipient: str) -> bool:
        """Whether ``recipient`` is the address this token was made for."""
        return self.recipient_digest is not None and hmac.compare_digest(
            self.recipient_digest, recipient_digest(recipient)
        )


def recipient_digest(recipient: str) -> bytes:
    """A short digest of an address; the domain's case does not matter (SMTP ignores it)."""
    local, _, domain = recipient.rpartition("@")
    canonical = f"{local}@{domain.lower()}" if local else recipient
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()[:_DIGEST_BYTES]


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, b"notifier-verp\x00" + body, hashlib.sha256).digest()[:_MAC_BYTES]


def _pack_id(notification_id: str) -> bytes:
    try:
        parsed = uuid.UUID(notification_id)
    except ValueError:
        parsed = None
    if parsed is not None and str(parsed) == notification_id:
        return bytes([_VERSION_UUID]) + parsed.bytes
    raw = notification_id.encode("utf-8", "surrogatepass")
    if len(raw) > 255:
        raise ValueError("a notification id longer than 255 bytes cannot be put in a VERP token")
    return bytes([_VERSION_TEXT, len(raw)]) + raw


def make_token(notification_id: str, recipient: str | None, *, secret: bytes) -> str:
    """The token for a notification (and its single recipient): lowercase base32, no padding.

    Base32 because some MTAs change the case of a local part; a UUID id gives 53 characters,
    so ``bounces+<token>`` stays within SMTP's 64-octet local part.
    """
    digest = recipient_digest(recipient) if recipient is not None else _NO_RECIPIENT
    body = _pack_id(notification_id) + digest
    return base64.b32encode(body + _mac(secret, body)).decode().rstrip("=").lower()


def read_token(token: str, *, secret: bytes) -> VerpToken | None:
    """The verified contents of a token, or None for anything forged, altered or malformed."""
    text = token.strip().upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        return None
    if len(raw) < 1 + _DIGEST_BYTES + _MAC_BYTES:
        return None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    version, rest = body[0], body[1:-_DIGEST_BYTES]
    digest = body[-_DIGEST_BYTES:]
    if version == _VERSION_UUID and len(rest) == 16:
        notification_id = str(uuid.UUID(bytes=rest))
    elif version == _VERSION_TEXT and rest and rest[0] == len(rest) - 1:
        notification_id = rest[1:].decode("utf-8", "surrogatepass")
    else:
        return None
    return VerpToken(
        notification_id=notification_id,
        recipient_digest=None if digest == _NO_RECIPIENT else digest,
    )


def bounce_address(
    notification_id: str, recipient: str | None, *, domain: str, secret: bytes
) -> str:
    """The envelope sender ``bounces+<token>@domain`` for one notification."""
    return f"{VERP_LOCAL_PREFIX}+{make_token(notification_id, recipient, secret=secret)}@{domain}"


def parse_bounce_address(address: str, *, domain: str, secret: bytes) -> VerpToken | None:
    """The token of a ``bounces+<token>@domain`` address, or None when it is not a valid one."""
    local, _, at_domain = address.strip().strip("<>").rpartition("@")
    if at_domain.lower() != domain.lower():
        return None
    prefix, plus, token = local.partition("+")
    if prefix.lower() != VERP_LOCAL_PREFIX or not plus:
        return None
    return read_token(token, secret=secret)

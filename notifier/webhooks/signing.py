"""Standard Webhooks signing: ``whsec_`` secrets and the ``webhook-*`` headers of one request."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

__all__ = ["new_secret", "signed_headers"]

#: Bytes of key material in a new secret (the specification asks for 24 to 64).
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh ``whsec_``-prefixed, base64 signing secret."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signed_headers(
    *, message_id: str, body: str, secrets_in_use: Sequence[str], at: datetime | None = None
) -> dict[str, str]:
    """The headers of one delivery, signed with every secret in use.

    During a rotation's grace period two secrets are in use; the specification sends both
    signatures, space-separated, and a receiver accepts the request if any of them verifies.
    """
    if not secrets_in_use:
        raise ValueError("an endpoint needs at least one secret")
    at = at or datetime.now(UTC)
    signatures = [Webhook(secret).sign(message_id, at, body) for secret in secrets_in_use]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
    }

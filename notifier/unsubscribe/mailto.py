"""The mailto form of List-Unsubscribe (RFC 2369), as the bounce receiver takes it: mail to
``unsubscribe@BOUNCE_DOMAIN`` whose Subject ends with the token."""

from __future__ import annotations

import email
import email.policy

from notifier.errors import InvalidUnsubscribeToken
from notifier.settings import Settings
from notifier.storage.suppressions import SuppressionStore
from notifier.unsubscribe.preferences import unsubscribe
from notifier.unsubscribe.tokens import MAILTO_LOCAL_PART, read_token

__all__ = ["apply_unsubscribe_mail", "is_unsubscribe_address"]


def is_unsubscribe_address(address: str, domain: str) -> bool:
    local, _, at = address.rpartition("@")
    return local.lower() == MAILTO_LOCAL_PART and at.lower() == domain.lower()


def _token(raw: bytes) -> str | None:
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        subject = str(message.get("Subject", ""))
    except (ValueError, TypeError, IndexError):
        return None
    # Mail programs may prefix the subject ("Re:", "unsubscribe"): the token is the last word.
    words = subject.split()
    return words[-1] if words else None


async def apply_unsubscribe_mail(
    settings: Settings, suppressions: SuppressionStore, raw: bytes
) -> str | None:
    """Unsubscribe as the mail's token says; returns the problem when it cannot."""
    token = _token(raw)
    if token is None:
        return "unsubscribe mail without a token in its Subject: not applied"
    try:
        found = read_token(settings, token)
    except InvalidUnsubscribeToken as exc:
        return f"unsubscribe mail: {exc}: not applied"
    await unsubscribe(suppressions, found.recipient, found.category, source="mailto")
    return None

"""The one shape every bounce and complaint takes, whatever it came from (DSN, ARF, webhook)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from notifier.compose.addresses import normalize_address

__all__ = [
    "FeedbackEvent",
    "FeedbackKind",
    "SuppressionReason",
    "normalize_address",
    "notification_id_from_message_id",
    "status_class",
]

#: ``delayed`` is a warning (the MTA keeps trying): recorded nowhere, counted in metrics.
FeedbackKind = Literal["hard_bounce", "soft_bounce", "complaint", "delayed"]
SuppressionReason = Literal["hard_bounce", "complaint", "manual", "unsubscribe"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """A bounce or complaint about one recipient.

    ``recipient`` may be None when a report hides it (many ARF reports redact it); the VERP
    token in ``envelope_to`` can still name it. ``dedupe_key`` makes applying it idempotent.
    """

    kind: FeedbackKind
    recipient: str | None
    source: str
    dedupe_key: str
    status: str | None = None
    diagnostic: str | None = None
    #: The notification, when the report says it directly (a provider's metadata).
    notification_id: str | None = None
    #: The original message's Message-ID header, when the report quotes it.
    message_id: str | None = None
    #: Where the report was addressed: a VERP address names notification and recipient.
    envelope_to: tuple[str, ...] = ()
    occurred_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        """The name of the event on a notification record."""
        return {
            "hard_bounce": "bounced",
            "soft_bounce": "soft_bounced",
            "complaint": "complained",
            "delayed": "delayed",
        }[self.kind]


def status_class(status: str | None, *texts: str | None) -> str | None:
    """The enhanced status code (``5.1.1``) from a Status field, or found in diagnostic text."""
    for text in (status, *texts):
        if text:
            match = _STATUS.search(text)
            if match:
                return match.group(0)
    return None


def notification_id_from_message_id(message_id: str | None) -> str | None:
    """The notification id a notifier Message-ID (``<escaped-id@domain>``) was built from.

    The caller must check that the record's stored Message-ID is the same, since any mail's
    Message-ID parses.
    """
    if not message_id:
        return None
    text = message_id.strip()
    if not (text.startswith("<") and text.endswith(">") and "@" in text):
        return None
    left = text[1:-1].rpartition("@")[0]
    return unquote(left, errors="surrogatepass") or None

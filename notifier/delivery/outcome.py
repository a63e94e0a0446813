"""DeliveryOutcome: what one delivery of a notification did, as a value the worker reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from notifier.errors import DeliveryError

__all__ = ["DeliveryOutcome", "DeliveryStatus"]

#: ``sent``/``failed``/``retrying``: this delivery decided; ``skipped``: the record was finished
#: or scheduled already; ``deferred``: another delivery holds the lease; ``missing``: no record;
#: ``suppressed``: every recipient is on the suppression list, nothing was sent.
DeliveryStatus = Literal[
    "sent", "failed", "retrying", "skipped", "deferred", "missing", "suppressed"
]


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one execution of a delivery did."""

    id: str
    status: DeliveryStatus
    detail: str = ""
    #: The record's status afterwards, when known.
    record_status: str | None = None
    message_id: str | None = None
    #: Seconds until the retry, when ``retrying``.
    retry_in: float | None = None
    #: Why the attempt did not deliver (``failed`` and ``retrying``), with its code and recipient.
    error: DeliveryError | None = None
    #: Where the record came from (``api``, ``celery``, ``compat``, ...), when known.
    source: str = ""
    #: The record's ``To`` addresses, when known.
    to: tuple[str, ...] = ()

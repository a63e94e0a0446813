"""Bounce, complaint and suppression metrics (registered with notifier's other metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["BOUNCES", "COMPLAINTS", "SUPPRESSED", "SUPPRESSION_LIST_SIZE"]

# Labelled, so their values are created lazily in the process that counts them (after a
# worker's fork and its multiprocess set-up), like the rest of notifier's metrics.
BOUNCES = Counter(
    "notifier_bounces",
    "Bounces received (DSN, heuristic or provider webhook), by type: hard, soft, delayed.",
    ["type"],
)
COMPLAINTS = Counter(
    "notifier_complaints",
    "Spam complaints received (ARF report or provider webhook), by where they came from.",
    ["source"],
)
SUPPRESSED = Counter(
    "notifier_suppressed",
    "Recipients left out of a send because they are on the suppression list, by reason.",
    ["reason"],
)
SUPPRESSION_LIST_SIZE = Gauge(
    "notifier_suppression_list_size",
    "Entries on the suppression list (read from Redis when scraped).",
    multiprocess_mode="mostrecent",
)

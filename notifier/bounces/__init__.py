"""Bounces and complaints: VERP addresses, DSN/ARF parsing, provider webhooks, the receiver.

The package root re-exports the pure parts only; ``handling`` and ``receiver`` do I/O.
"""

from notifier.bounces.events import FeedbackEvent, normalize_address
from notifier.bounces.parse import ParsedReport, parse_report
from notifier.bounces.verp import bounce_address, parse_bounce_address

__all__ = [
    "FeedbackEvent",
    "ParsedReport",
    "bounce_address",
    "normalize_address",
    "parse_bounce_address",
    "parse_report",
]

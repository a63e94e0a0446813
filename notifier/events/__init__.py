"""Events: the envelope, the routing rules file and routing itself (pure), and their intake."""

from __future__ import annotations

from notifier.events.envelope import EventEnvelope, parse_event
from notifier.events.intake import EventResult, handle_event
from notifier.events.routing import PlannedNotification, RoutingFailure, plan_notifications
from notifier.events.rules import Rule, RuleSet, event_path, load_rules, parse_rules

__all__ = [
    "EventEnvelope",
    "EventResult",
    "PlannedNotification",
    "RoutingFailure",
    "Rule",
    "RuleSet",
    "event_path",
    "handle_event",
    "load_rules",
    "parse_event",
    "parse_rules",
    "plan_notifications",
]

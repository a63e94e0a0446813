"""Event routing: turn one event and the rule set into planned notifications, without I/O.

A missing recipient or a condition that raises is reported per rule as a
:class:`RoutingFailure`, so one bad rule never hides the notifications of the others.
A locale path that resolves to nothing (or to something that is not a locale) means
"the default locale", never a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from notifier.events.envelope import EventEnvelope
from notifier.events.rules import LOCALE_PATTERN, Rule, RuleSet, event_path

__all__ = ["PlannedNotification", "RoutingFailure", "plan_notifications"]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class PlannedNotification:
    """An email one rule asks for; the template context is the event data plus rule context."""

    rule: str
    template: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    locale: str | None
    subject: str | None
    context: Mapping[str, Any]
    delay_seconds: float | None


@dataclass(frozen=True, slots=True)
class RoutingFailure:
    """A matching rule that could not be planned; ``field`` is the event path or ``when``."""

    rule: str
    template: str
    field: str
    message: str


class _Unroutable(Exception):
    """Internal: carries a RoutingFailure out of the recipient resolution."""

    def __init__(self, failure: RoutingFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def plan_notifications(
    event: EventEnvelope, rules: RuleSet
) -> list[PlannedNotification | RoutingFailure]:
    """One entry per rule for ``event.type`` whose condition holds; [] when the type has none."""
    planned: list[PlannedNotification | RoutingFailure] = []
    for rule in rules.rules_for(event.type):
        try:
            if not _condition_holds(event, rule):
                continue
            planned.append(
                PlannedNotification(
                    rule=rule.name,
                    template=rule.template,
                    to=_recipients(event, rule, "to", rule.to),
                    cc=_recipients(event, rule, "cc", rule.cc),
                    bcc=_recipients(event, rule, "bcc", rule.bcc),
                    locale=_locale(event, rule.locale),
                    subject=rule.subject,
                    context=MappingProxyType({**event.data, **rule.context}),
                    delay_seconds=rule.delay_seconds,
                )
            )
        except _Unroutable as exc:
            planned.append(exc.failure)
    return planned


def _condition_holds(event: EventEnvelope, rule: Rule) -> bool:
    if rule.condition is None:
        return True
    try:
        result = rule.condition(
            data=event.data,
            type=event.type,
            source=event.source,
            subject=event.subject,
            id=event.id,
        )
    # The expression is operator-written Jinja evaluated against publisher data: anything
    # from UndefinedError to SecurityError or ZeroDivisionError can come out of it, and all of
    # them mean the same thing here, this rule cannot be decided for this event.
    except Exception as exc:
        raise _Unroutable(
            RoutingFailure(
                rule=rule.name,
                template=rule.template,
                field="when",
                message=(
                    f"condition {rule.condition_source!r} of rule {rule.name!r} raised "
                    f"{type(exc).__name__}: {exc}"
                ),
            )
        ) from exc
    return bool(result)


def _recipients(
    event: EventEnvelope, rule: Rule, role: str, specs: tuple[str, ...]
) -> tuple[str, ...]:
    addresses: list[str] = []
    for spec in specs:
        path = event_path(spec)
        values = [spec] if path is None else _resolve_addresses(event, rule, role, spec, path)
        addresses.extend(value for value in values if value not in addresses)
    return tuple(addresses)


def _resolve_addresses(
    event: EventEnvelope, rule: Rule, role: str, spec: str, path: tuple[str, ...]
) -> list[str]:
    def fail(problem: str) -> _Unroutable:
        return _Unroutable(
            RoutingFailure(
                rule=rule.name,
                template=rule.template,
                field=spec,
                message=f"{problem} (needed by rule {rule.name!r} for {role!r})",
            )
        )

    value = _lookup(event, path)
    items = value if isinstance(value, list) else [value]
    if value is _MISSING or value is None or not items or value == "":
        where = "event data" if path[0] == "data" else "event"
        raise fail(f"{where} has no {spec!r}")
    addresses: list[str] = []
    for item in items:
        # Full address validation belongs to the delivery layer; this only rejects values
        # that are plainly not an address, so the failure names the event field.
        if not isinstance(item, str) or "@" not in item or "\r" in item or "\n" in item:
            raise fail(f"{spec!r} is not an email address: {item!r}")
        addresses.append(item)
    return addresses


def _locale(event: EventEnvelope, spec: str | None) -> str | None:
    if spec is None:
        return None
    path = event_path(spec)
    if path is None:
        return spec
    value = _lookup(event, path)
    # Publisher-supplied locales feed template lookup, so only well-formed tags get through.
    return value if isinstance(value, str) and LOCALE_PATTERN.fullmatch(value) else None


def _lookup(event: EventEnvelope, path: tuple[str, ...]) -> object:
    head, *rest = path
    current: object = event.data if head == "data" else getattr(event, head)
    for key in rest:
        if not isinstance(current, dict) or key not in current:
            return _MISSING
        current = current[key]
    return current

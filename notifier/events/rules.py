"""Routing rules: which emails follow which event type, loaded from a TOML file at start-up.

Template context precedence: the event's ``data`` comes first and a rule's fixed ``context``
table is laid over it, so operator-set values (``app_name``, ``support_url``) cannot be
overridden by whatever a publisher puts in an event.

Recipient and locale values are either *event paths* (``data.user.email``, ``subject``,
``source``) or literals: a recipient literal contains ``@``, a locale literal looks like
``ru`` or ``pt-BR``. :func:`event_path` tells the two apart.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.environment import TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifier.errors import ConfigurationError

__all__ = ["Rule", "RuleSet", "event_path", "load_rules", "parse_rules"]

#: Top-level event attributes a path may name, besides ``data.<key>...``.
PATH_ATTRIBUTES = frozenset({"subject", "source"})
#: What a locale looks like, fixed in a rule or taken from an event: ``ru``, ``pt-BR``, ``zh_Hant``.
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")

_REQUIRED_KEYS = ("event", "template", "to")
_OPTIONAL_KEYS = ("name", "cc", "bcc", "locale", "subject", "when", "delay", "context")
_KNOWN_KEYS = frozenset(_REQUIRED_KEYS + _OPTIONAL_KEYS)
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")
_DELAY = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_DELAY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# One sandbox for every condition: ImmutableSandboxedEnvironment also forbids calling methods
# that mutate lists and dicts, so a condition cannot change the event it is judging.
_CONDITIONS = ImmutableSandboxedEnvironment()


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rule]]`` table, validated; ``to``/``cc``/``bcc`` hold event paths or addresses."""

    name: str
    event_type: str
    template: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    locale: str | None
    subject: str | None
    condition: TemplateExpression | None
    condition_source: str | None
    delay_seconds: float | None
    context: Mapping[str, Any]


class RuleSet:
    """An immutable collection of rules, looked up by event type in file order."""

    __slots__ = ("_by_type", "_rules")

    def __init__(self, rules: Collection[Rule] = ()) -> None:
        self._rules = tuple(rules)
        by_type: dict[str, list[Rule]] = {}
        for rule in self._rules:
            by_type.setdefault(rule.event_type, []).append(rule)
        self._by_type: Mapping[str, tuple[Rule, ...]] = MappingProxyType(
            {event_type: tuple(group) for event_type, group in by_type.items()}
        )

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        """The rules for ``event_type``, in file order; empty when the type has none."""
        return self._by_type.get(event_type, ())

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type that has at least one rule."""
        return frozenset(self._by_type)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self._rules)} rules for {sorted(self._by_type)})"


def event_path(spec: str) -> tuple[str, ...] | None:
    """Split ``spec`` into path segments if it is an event path, else return None.

    >>> event_path("data.user.email")
    ('data', 'user', 'email')
    >>> event_path("ops@example.com") is None
    True
    """
    if spec in PATH_ATTRIBUTES:
        return (spec,)
    segments = tuple(spec.split("."))
    if (
        len(segments) >= 2
        and segments[0] == "data"
        and all(_PATH_SEGMENT.fullmatch(segment) for segment in segments[1:])
    ):
        return segments
    return None


def load_rules(path: Path, *, known_templates: Collection[str]) -> RuleSet:
    """Read and validate the rules file at ``path``.

    Raises :class:`ConfigurationError` naming the file, the rule and the problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read rules file: {exc}") from exc
    return parse_rules(text, known_templates=known_templates, source=str(path))


def parse_rules(text: str, *, known_templates: Collection[str], source: str = "<rules>") -> RuleSet:
    """Validate a rules document given as TOML text; ``source`` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: malformed TOML: {exc}") from exc
    unknown = sorted(set(document) - {"rule"})
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))} "
            "(rules go in [[rule]] tables)"
        )
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise ConfigurationError(f"{source}: 'rule' must be an array of tables ([[rule]])")

    rules: list[Rule] = []
    per_event: dict[str, int] = {}
    seen: dict[str, int] = {}
    for position, table in enumerate(tables):
        if not isinstance(table, dict):
            raise ConfigurationError(f"{source}: rule #{position}: must be a table ([[rule]])")
        builder = _RuleBuilder(source=source, position=position, table=table, per_event=per_event)
        rule = builder.build(known_templates=known_templates)
        if rule.name in seen:
            raise ConfigurationError(
                f"{source}: rule {rule.name!r}: duplicate rule name "
                f"(rules #{seen[rule.name]} and #{position} in the file)"
            )
        seen[rule.name] = position
        rules.append(rule)
    return RuleSet(rules)


class _RuleBuilder:
    """Validates one ``[[rule]]`` table; every error names the file and the rule."""

    def __init__(
        self, *, source: str, position: int, table: dict[str, Any], per_event: dict[str, int]
    ) -> None:
        self.source = source
        self.table = table
        self.per_event = per_event
        # The best name available before anything can fail: the rule's own name, its default
        # name, or failing both its position in the file.
        name, event_type = table.get("name"), table.get("event")
        if isinstance(name, str) and name:
            self.label = repr(name)
        elif isinstance(event_type, str) and event_type:
            self.label = repr(f"{event_type}#{per_event.get(event_type, 0)}")
        else:
            self.label = f"#{position}"

    def fail(self, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.source}: rule {self.label}: {problem}")

    def build(self, *, known_templates: Collection[str]) -> Rule:
        table = self.table
        unknown = sorted(set(table) - _KNOWN_KEYS)
        if unknown:
            raise self.fail(
                f"unknown key(s) {', '.join(map(repr, unknown))} "
                f"(allowed: {', '.join(_REQUIRED_KEYS + _OPTIONAL_KEYS)})"
            )
        for key in _REQUIRED_KEYS:
            if key not in table:
                raise self.fail(f"missing required key {key!r}")

        event_type = self.text("event")
        if any(char.isspace() for char in event_type):
            raise self.fail(f"'event' must not contain whitespace: {event_type!r}")
        index = self.per_event.get(event_type, 0)
        self.per_event[event_type] = index + 1
        name = self.text("name") if "name" in table else f"{event_type}#{index}"

        template = self.text("template")
        if template not in known_templates:
            known = ", ".join(sorted(known_templates)) or "none"
            raise self.fail(f"unknown template {template!r} (known: {known})")

        to = self.recipients("to")
        if not to:
            raise self.fail("'to' must name at least one recipient")
        condition_source = self.text("when") if "when" in table else None
        return Rule(
            name=name,
            event_type=event_type,
            template=template,
            to=to,
            cc=self.recipients("cc"),
            bcc=self.recipients("bcc"),
            locale=self.locale(),
            subject=self.subject(),
            condition=self.condition(condition_source),
            condition_source=condition_source,
            delay_seconds=self.delay(),
            context=self.context(),
        )

    def text(self, key: str) -> str:
        value = self.table.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key!r} must be a non-empty string, got {value!r}")
        return value

    def recipients(self, key: str) -> tuple[str, ...]:
        value = self.table.get(key, [])
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.fail(f"{key!r} must be a string or a list of strings, got {value!r}")
        for item in items:
            if not isinstance(item, str):
                raise self.fail(f"{key!r} must be a string or a list of strings, got {item!r}")
            if "@" in item:
                if "\r" in item or "\n" in item:
                    raise self.fail(f"{key!r}: address {item!r} contains a line break")
            elif event_path(item) is None:
                raise self.fail(
                    f"{key!r}: bad path {item!r} (expected data.<key>[.<key>...], "
                    f"{' or '.join(sorted(PATH_ATTRIBUTES))}, or an address containing '@')"
                )
        return tuple(items)

    def locale(self) -> str | None:
        if "locale" not in self.table:
            return None
        value = self.text("locale")
        if event_path(value) is None and not LOCALE_PATTERN.fullmatch(value):
            raise self.fail(
                f"'locale': {value!r} is neither an event path (data.<key>..., "
                f"{', '.join(sorted(PATH_ATTRIBUTES))}) nor a locale like 'ru' or 'pt-BR'"
            )
        return value

    def subject(self) -> str | None:
        if "subject" not in self.table:
            return None
        value = self.text("subject")
        if "\r" in value or "\n" in value:
            raise self.fail("'subject' must be a single line")
        return value

    def condition(self, source: str | None) -> TemplateExpression | None:
        if source is None:
            return None
        try:
            return _CONDITIONS.compile_expression(source)
        except TemplateSyntaxError as exc:
            raise self.fail(f"condition 'when' = {source!r} does not compile: {exc}") from exc

    def delay(self) -> float | None:
        if "delay" not in self.table:
            return None
        value = self.table["delay"]
        seconds: float
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DELAY.fullmatch(value.strip())):
            seconds = float(match[1]) * _DELAY_UNITS[match[2]]
        else:
            raise self.fail(
                f"bad delay {value!r} (expected seconds as a number, or e.g. '30s', '10m', "
                "'2h', '1d')"
            )
        if not math.isfinite(seconds) or seconds < 0:
            raise self.fail(f"bad delay {value!r} (must be a finite, non-negative duration)")
        return seconds

    def context(self) -> Mapping[str, Any]:
        value = self.table.get("context", {})
        if not isinstance(value, dict):
            raise self.fail(f"'context' must be a table, got {value!r}")
        return MappingProxyType(dict(value))

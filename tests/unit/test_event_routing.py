"""Unit tests for routing: which notifications an event plans, and how failures are reported."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.events import (
    EventEnvelope,
    PlannedNotification,
    RoutingFailure,
    RuleSet,
    parse_event,
    parse_rules,
    plan_notifications,
)

KNOWN = frozenset({"welcome", "digest", "alert"})


def _rules(text: str) -> RuleSet:
    return parse_rules(text, known_templates=KNOWN, source="test-rules")


def _event(data: dict[str, Any], **attributes: Any) -> EventEnvelope:
    return parse_event({"type": "user.registered", "data": data, **attributes})


def _planned(entries: list[PlannedNotification | RoutingFailure]) -> PlannedNotification:
    (entry,) = entries
    assert isinstance(entry, PlannedNotification), entry
    return entry


def _failure(entries: list[PlannedNotification | RoutingFailure]) -> RoutingFailure:
    (entry,) = entries
    assert isinstance(entry, RoutingFailure), entry
    return entry


WELCOME = _rules(
    """
    [[rule]]
    event = "user.registered"
    name = "welcome-email"
    template = "welcome"
    to = "data.email"
    locale = "data.locale"
    context = { app_name = "Acme" }
    """
)


def test_simple_rule_plans_one_notification() -> None:
    planned = _planned(plan_notifications(_event({"email": "ann@example.com"}), WELCOME))
    assert planned == PlannedNotification(
        rule="welcome-email",
        template="welcome",
        to=("ann@example.com",),
        cc=(),
        bcc=(),
        locale=None,
        subject=None,
        context={"email": "ann@example.com", "app_name": "Acme"},
        delay_seconds=None,
    )


def test_unknown_event_type_plans_nothing() -> None:
    event = parse_event({"type": "order.shipped", "data": {"email": "ann@example.com"}})
    assert plan_notifications(event, WELCOME) == []


def test_missing_recipient_is_a_failure_naming_the_field() -> None:
    failure = _failure(plan_notifications(_event({"name": "Ann"}), WELCOME))
    assert failure == RoutingFailure(
        rule="welcome-email",
        template="welcome",
        field="data.email",
        message="event data has no 'data.email' (needed by rule 'welcome-email' for 'to')",
    )


@pytest.mark.parametrize("value", [None, "", []])
def test_empty_recipient_is_a_failure(value: object) -> None:
    failure = _failure(plan_notifications(_event({"email": value}), WELCOME))
    assert failure.field == "data.email"
    assert "has no 'data.email'" in failure.message


@pytest.mark.parametrize("value", [42, {"address": "a@b.c"}, "not-an-address", "a@b.c\r\nBcc: x@y"])
def test_non_address_recipient_is_a_failure(value: object) -> None:
    failure = _failure(plan_notifications(_event({"email": value}), WELCOME))
    assert failure.field == "data.email"
    assert "is not an email address" in failure.message


def test_path_through_a_non_object_is_missing() -> None:
    rules = _rules('[[rule]]\nevent = "user.registered"\ntemplate = "welcome"\nto = "data.u.e"\n')
    failure = _failure(plan_notifications(_event({"u": "flat"}), rules))
    assert failure.field == "data.u.e"
    assert failure.rule == "user.registered#0"


def test_list_recipients_literals_and_attributes() -> None:
    rules = _rules(
        """
        [[rule]]
        event = "user.registered"
        template = "digest"
        to = ["data.team.emails", "subject", "ops@example.com"]
        cc = "data.manager"
        bcc = ["audit@example.com", "ops@example.com"]
        """
    )
    event = _event(
        {
            "team": {"emails": ["a@example.com", "b@example.com", "a@example.com"]},
            "manager": "m@x.io",
        },
        subject="owner@example.com",
    )
    planned = _planned(plan_notifications(event, rules))
    assert planned.to == ("a@example.com", "b@example.com", "owner@example.com", "ops@example.com")
    assert planned.cc == ("m@x.io",)
    assert planned.bcc == ("audit@example.com", "ops@example.com")


def test_missing_cc_fails_the_rule() -> None:
    rules = _rules(
        '[[rule]]\nevent = "user.registered"\ntemplate = "welcome"\n'
        'to = "data.email"\ncc = "source"\n'
    )
    failure = _failure(plan_notifications(_event({"email": "ann@example.com"}), rules))
    assert failure.field == "source"
    assert failure.message == "event has no 'source' (needed by rule 'user.registered#0' for 'cc')"


def test_list_with_a_bad_item_fails() -> None:
    rules = _rules('[[rule]]\nevent = "user.registered"\ntemplate = "welcome"\nto = "data.to"\n')
    failure = _failure(plan_notifications(_event({"to": ["a@example.com", None]}), rules))
    assert "is not an email address: None" in failure.message


CONDITIONAL = _rules(
    """
    [[rule]]
    event = "user.registered"
    name = "pro-only"
    template = "welcome"
    to = "data.email"
    when = "data.plan == 'pro' and source == '/billing'"

    [[rule]]
    event = "user.registered"
    name = "always"
    template = "digest"
    to = "ops@example.com"
    """
)


def test_condition_true_plans_the_rule() -> None:
    event = _event({"email": "ann@example.com", "plan": "pro"}, source="/billing")
    assert [entry.rule for entry in plan_notifications(event, CONDITIONAL)] == [
        "pro-only",
        "always",
    ]


@pytest.mark.parametrize(
    ("data", "source"),
    [
        ({"email": "ann@example.com", "plan": "free"}, "/billing"),
        ({"email": "a@b.c"}, "/billing"),
        ({"email": "ann@example.com", "plan": "pro"}, None),
    ],
)
def test_condition_false_skips_the_rule(data: dict[str, Any], source: str | None) -> None:
    event = _event(data, **({"source": source} if source else {}))
    assert [entry.rule for entry in plan_notifications(event, CONDITIONAL)] == ["always"]


def test_condition_skipped_rule_needs_no_recipient() -> None:
    # A rule whose condition is false must not fail for lacking data.email.
    event = _event({"plan": "free"}, source="/billing")
    entries = plan_notifications(event, CONDITIONAL)
    assert all(isinstance(entry, PlannedNotification) for entry in entries)


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        ("data.profile.age > 18", "UndefinedError"),
        ("1 // data.zero", "ZeroDivisionError"),
        ("data.tags.append('x')", "SecurityError"),
    ],
)
def test_condition_that_raises_is_a_failure(condition: str, error: str) -> None:
    rules = _rules(
        f'[[rule]]\nevent = "user.registered"\nname = "r"\ntemplate = "welcome"\n'
        f'to = "data.email"\nwhen = "{condition}"\n'
        '[[rule]]\nevent = "user.registered"\ntemplate = "digest"\nto = "ops@example.com"\n'
    )
    event = _event({"email": "ann@example.com", "zero": 0, "tags": []})
    failure, other = plan_notifications(event, rules)
    assert isinstance(failure, RoutingFailure)
    assert (failure.rule, failure.template, failure.field) == ("r", "welcome", "when")
    assert failure.message.startswith(f"condition {condition!r} of rule 'r' raised {error}")
    assert isinstance(other, PlannedNotification)
    assert event.data["tags"] == []


def test_condition_sees_event_attributes() -> None:
    rules = _rules(
        '[[rule]]\nevent = "user.registered"\ntemplate = "welcome"\nto = "a@example.com"\n'
        "when = \"type == 'user.registered' and id == '7' and subject == 's'\"\n"
    )
    assert len(plan_notifications(_event({}, id="7", subject="s"), rules)) == 1
    assert plan_notifications(_event({}, id="8", subject="s"), rules) == []


@pytest.mark.parametrize(
    ("data", "locale"),
    [
        ({"email": "a@example.com", "locale": "ru"}, "ru"),
        ({"email": "a@example.com", "locale": "pt-BR"}, "pt-BR"),
        ({"email": "a@example.com"}, None),
        ({"email": "a@example.com", "locale": None}, None),
        ({"email": "a@example.com", "locale": "../../etc/passwd"}, None),
        ({"email": "a@example.com", "locale": 5}, None),
    ],
)
def test_locale_path_is_optional(data: dict[str, Any], locale: str | None) -> None:
    assert _planned(plan_notifications(_event(data), WELCOME)).locale == locale


def test_fixed_locale_subject_and_delay_are_copied() -> None:
    rules = _rules(
        '[[rule]]\nevent = "user.registered"\ntemplate = "welcome"\nto = "data.email"\n'
        'locale = "ru"\nsubject = "Привет"\ndelay = "2h"\n'
    )
    planned = _planned(
        plan_notifications(_event({"email": "a@example.com", "locale": "en"}), rules)
    )
    assert (planned.locale, planned.subject, planned.delay_seconds) == ("ru", "Привет", 7200.0)


def test_rule_context_overrides_event_data() -> None:
    event = _event({"email": "a@example.com", "app_name": "Evil", "name": "Ann"})
    planned = _planned(plan_notifications(event, WELCOME))
    assert planned.context == {"email": "a@example.com", "app_name": "Acme", "name": "Ann"}
    assert event.data["app_name"] == "Evil"


def test_one_entry_per_rule_in_file_order() -> None:
    rules = _rules(
        """
        [[rule]]
        event = "user.registered"
        template = "welcome"
        to = "data.email"
        [[rule]]
        event = "user.registered"
        template = "alert"
        to = "data.missing"
        [[rule]]
        event = "user.registered"
        template = "digest"
        to = "ops@example.com"
        """
    )
    entries = plan_notifications(_event({"email": "a@example.com"}), rules)
    assert [(type(e).__name__, e.rule) for e in entries] == [
        ("PlannedNotification", "user.registered#0"),
        ("RoutingFailure", "user.registered#1"),
        ("PlannedNotification", "user.registered#2"),
    ]

"""Unit tests for the routing rules file: what loads, and every way a file is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.errors import ConfigurationError
from notifier.events import Rule, RuleSet, event_path, load_rules, parse_rules

KNOWN = frozenset({"welcome", "password_reset", "plain"})
REPO_ROOT = Path(__file__).resolve().parents[2]

WriteRules = Callable[[str], Path]


@pytest.fixture
def write_rules(tmp_path: Path) -> WriteRules:
    def write(text: str) -> Path:
        path = tmp_path / "events.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _only(rules: RuleSet) -> Rule:
    assert len(rules) == 1
    return next(iter(rules))


def test_full_rule_loads(write_rules: WriteRules) -> None:
    path = write_rules(
        """
        [[rule]]
        event = "user.upgraded"
        name = "pro-welcome"
        template = "welcome"
        to = ["data.email", "subject", "ops@example.com"]
        cc = "data.manager.email"
        bcc = ["audit@example.com"]
        locale = "data.locale"
        subject = "Welcome to Pro"
        when = "data.plan == 'pro'"
        delay = "10m"
        context = { app_name = "Acme", links = { help = "https://acme.test/help" } }
        """
    )
    rule = _only(load_rules(path, known_templates=KNOWN))
    assert rule.name == "pro-welcome"
    assert rule.event_type == "user.upgraded"
    assert rule.template == "welcome"
    assert rule.to == ("data.email", "subject", "ops@example.com")
    assert rule.cc == ("data.manager.email",)
    assert rule.bcc == ("audit@example.com",)
    assert rule.locale == "data.locale"
    assert rule.subject == "Welcome to Pro"
    assert rule.condition_source == "data.plan == 'pro'"
    assert rule.condition is not None
    assert rule.condition(data={"plan": "pro"}) is True
    assert rule.condition(data={"plan": "free"}) is False
    assert rule.delay_seconds == 600.0
    assert rule.context == {"app_name": "Acme", "links": {"help": "https://acme.test/help"}}


def test_minimal_rule_defaults(write_rules: WriteRules) -> None:
    path = write_rules('[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\n')
    rule = _only(load_rules(path, known_templates=KNOWN))
    assert rule.name == "e#0"
    assert (rule.cc, rule.bcc) == ((), ())
    assert rule.locale is None
    assert rule.subject is None
    assert rule.condition is None
    assert rule.condition_source is None
    assert rule.delay_seconds is None
    assert rule.context == {}


def test_default_names_count_within_each_event(write_rules: WriteRules) -> None:
    rule = '[[rule]]\nevent = "{event}"\ntemplate = "plain"\nto = "data.email"\n'
    path = write_rules("".join(rule.format(event=event) for event in "abab"))
    rules = load_rules(path, known_templates=KNOWN)
    assert [r.name for r in rules] == ["a#0", "b#0", "a#1", "b#1"]
    assert [r.name for r in rules.rules_for("a")] == ["a#0", "a#1"]


def test_ruleset_lookup(write_rules: WriteRules) -> None:
    path = write_rules(
        '[[rule]]\nevent = "a"\ntemplate = "plain"\nto = "data.email"\n'
        '[[rule]]\nevent = "b"\ntemplate = "plain"\nto = "data.email"\n'
    )
    rules = load_rules(path, known_templates=KNOWN)
    assert len(rules) == 2
    assert rules.event_types == frozenset({"a", "b"})
    assert rules.rules_for("nobody.listens") == ()


def test_empty_file_is_an_empty_ruleset(write_rules: WriteRules) -> None:
    rules = load_rules(write_rules("# no rules yet\n"), known_templates=KNOWN)
    assert len(rules) == 0
    assert rules.event_types == frozenset()


def test_context_is_read_only(write_rules: WriteRules) -> None:
    path = write_rules(
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ncontext = { a = 1 }\n'
    )
    rule = _only(load_rules(path, known_templates=KNOWN))
    with pytest.raises(TypeError):
        rule.context["a"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [
        ("0", 0.0),
        ("45", 45.0),
        ("2.5", 2.5),
        ('"30s"', 30.0),
        ('"10m"', 600.0),
        ('"2h"', 7200.0),
        ('"1d"', 86400.0),
        ('"1.5h"', 5400.0),
    ],
)
def test_delay_forms(write_rules: WriteRules, delay: str, seconds: float) -> None:
    path = write_rules(
        f'[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ndelay = {delay}\n'
    )
    assert _only(load_rules(path, known_templates=KNOWN)).delay_seconds == seconds


@pytest.mark.parametrize("locale", ["ru", "pt-BR", "zh_Hant", "data.user.locale", "subject"])
def test_locale_forms(write_rules: WriteRules, locale: str) -> None:
    path = write_rules(
        f'[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\nlocale = "{locale}"\n'
    )
    assert _only(load_rules(path, known_templates=KNOWN)).locale == locale


def test_shipped_rules_file_loads() -> None:
    rules = load_rules(
        REPO_ROOT / "templates" / "events.toml",
        known_templates={"welcome", "password_reset", "email_verification", "plain"},
    )
    assert rules.event_types == frozenset(
        {"user.registered", "user.password_reset_requested", "user.email_verification_requested"}
    )
    expected = {
        "user.registered": "welcome",
        "user.password_reset_requested": "password_reset",
        "user.email_verification_requested": "email_verification",
    }
    for event_type, template in expected.items():
        (rule,) = rules.rules_for(event_type)
        assert rule.template == template
        assert rule.to == ("data.email",)
        assert rule.locale == "data.locale"


def test_event_path_syntax() -> None:
    assert event_path("data.email") == ("data", "email")
    assert event_path("data.user.e-mail_2") == ("data", "user", "e-mail_2")
    assert event_path("subject") == ("subject",)
    assert event_path("source") == ("source",)
    for not_a_path in ("data", "data.", "data..x", "email", "data.a b", "id", "a@b.c", ""):
        assert event_path(not_a_path) is None, not_a_path


# Each case: the rules file body, the rule label the message must name, and the problem text.
BAD_FILES = {
    "malformed toml": ('[[rule]\nevent = "e"\n', None, "malformed TOML"),
    "unknown top-level key": ("version = 2\n", None, "unknown top-level key(s) 'version'"),
    "rule not an array": ('rule = "x"\n', None, "'rule' must be an array of tables"),
    "rule not a table": ("rule = [1]\n", "rule #0", "must be a table"),
    "unknown key": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\nreply_to = "x@y.z"\n',
        "rule 'e#0'",
        "unknown key(s) 'reply_to'",
    ),
    "missing event": (
        '[[rule]]\ntemplate = "plain"\nto = "data.email"\n',
        "rule #0",
        "missing required key 'event'",
    ),
    "missing template": (
        '[[rule]]\nevent = "e"\nto = "data.email"\n',
        "rule 'e#0'",
        "missing required key 'template'",
    ),
    "missing to": (
        '[[rule]]\nevent = "e"\nname = "named"\ntemplate = "plain"\n',
        "rule 'named'",
        "missing required key 'to'",
    ),
    "empty to": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = []\n',
        "rule 'e#0'",
        "'to' must name at least one recipient",
    ),
    "event not a string": (
        '[[rule]]\nevent = 3\ntemplate = "plain"\nto = "data.email"\n',
        "rule #0",
        "'event' must be a non-empty string",
    ),
    "event with whitespace": (
        '[[rule]]\nevent = "user registered"\ntemplate = "plain"\nto = "data.email"\n',
        "rule 'user registered#0'",
        "'event' must not contain whitespace",
    ),
    "unknown template": (
        '[[rule]]\nevent = "user.registered"\ntemplate = "welcom"\nto = "data.email"\n',
        "rule 'user.registered#0'",
        "unknown template 'welcom' (known: password_reset, plain, welcome)",
    ),
    "bad to path": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "email"\n',
        "rule 'e#0'",
        "'to': bad path 'email'",
    ),
    "bad cc path": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ncc = ["data..x"]\n',
        "rule 'e#0'",
        "'cc': bad path 'data..x'",
    ),
    "bcc not strings": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\nbcc = [1]\n',
        "rule 'e#0'",
        "'bcc' must be a string or a list of strings",
    ),
    "literal with line break": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "a@b.c\\nBcc: x@y.z"\n',
        "rule 'e#0'",
        "contains a line break",
    ),
    "bad locale": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\nlocale = "../etc"\n',
        "rule 'e#0'",
        "'locale': '../etc' is neither an event path",
    ),
    "multi-line subject": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\nsubject = "a\\nb"\n',
        "rule 'e#0'",
        "'subject' must be a single line",
    ),
    "bad delay unit": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ndelay = "10w"\n',
        "rule 'e#0'",
        "bad delay '10w'",
    ),
    "negative delay": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ndelay = -5\n',
        "rule 'e#0'",
        "bad delay -5",
    ),
    "infinite delay": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ndelay = inf\n',
        "rule 'e#0'",
        "bad delay inf",
    ),
    "boolean delay": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ndelay = true\n',
        "rule 'e#0'",
        "bad delay True (expected seconds",
    ),
    "condition does not compile": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\nwhen = "data.plan =="\n',
        "rule 'e#0'",
        "condition 'when' = 'data.plan ==' does not compile",
    ),
    "context not a table": (
        '[[rule]]\nevent = "e"\ntemplate = "plain"\nto = "data.email"\ncontext = "x"\n',
        "rule 'e#0'",
        "'context' must be a table",
    ),
    "duplicate names": (
        '[[rule]]\nevent = "a"\nname = "same"\ntemplate = "plain"\nto = "data.email"\n'
        '[[rule]]\nevent = "b"\nname = "same"\ntemplate = "plain"\nto = "data.email"\n',
        "rule 'same'",
        "duplicate rule name (rules #0 and #1 in the file)",
    ),
    "explicit name clashes with a default": (
        '[[rule]]\nevent = "a"\ntemplate = "plain"\nto = "data.email"\n'
        '[[rule]]\nevent = "b"\nname = "a#0"\ntemplate = "plain"\nto = "data.email"\n',
        "rule 'a#0'",
        "duplicate rule name",
    ),
}


@pytest.mark.parametrize(("body", "rule", "problem"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file_is_refused_with_file_rule_and_problem(
    write_rules: WriteRules, body: str, rule: str | None, problem: str
) -> None:
    path = write_rules(body)
    with pytest.raises(ConfigurationError) as caught:
        load_rules(path, known_templates=KNOWN)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    if rule is not None:
        assert f": {rule}: " in message
    assert problem in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigurationError, match="cannot read rules file") as caught:
        load_rules(path, known_templates=KNOWN)
    assert str(caught.value).startswith(f"{path}: ")
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read rules file"):
        load_rules(tmp_path, known_templates=KNOWN)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigurationError, match="cannot read rules file"):
        load_rules(path, known_templates=KNOWN)


def test_parse_rules_names_the_given_source() -> None:
    with pytest.raises(ConfigurationError, match=r"^inline: rule 'x#0': unknown template"):
        parse_rules(
            '[[rule]]\nevent = "x"\ntemplate = "nope"\nto = "a@b.c"\n',
            known_templates=KNOWN,
            source="inline",
        )

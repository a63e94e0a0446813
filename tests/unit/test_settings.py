"""Settings: parsing, derived values and the combinations refused at start-up."""

from __future__ import annotations

import pytest

from notifier.errors import ConfigurationError
from notifier.settings import RateLimit, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "API_KEYS",
        "RATE_LIMIT",
        "SMTP_PORT",
        "SMTP_SECURITY",
        "NOTIFIER_ENV",
        "MAIL_FROM",
    ):
        monkeypatch.delenv(name, raising=False)


def test_api_keys_are_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", " one , two,,")
    assert load_settings().api_key_values() == ["one", "two"]


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [("100/second", 100, 1.0), ("6000/minute", 6000, 60.0), ("5 / hours", 5, 3600.0)],
)
def test_rate_limit_forms(text: str, limit: int, period: float) -> None:
    rate = RateLimit.parse(text)
    assert (rate.limit, rate.period) == (limit, period)


@pytest.mark.parametrize("text", ["100", "0/second", "ten/minute", "5/fortnight"])
def test_bad_rate_limit_names_the_variable(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("RATE_LIMIT", text)
    with pytest.raises(ConfigurationError, match="RATE_LIMIT"):
        load_settings()


def test_empty_rate_limit_disables_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT", "")
    assert load_settings().rate_limit is None


def test_visibility_timeout_must_cover_backoff_and_time_limit() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(broker_visibility_timeout=100, retry_backoff_max=60, task_time_limit=60)
    message = str(info.value)
    assert "BROKER_VISIBILITY_TIMEOUT (100s)" in message and "= 120s" in message


def test_send_timeout_must_fit_in_task_time_limit() -> None:
    with pytest.raises(ConfigurationError, match="SEND_TIMEOUT"):
        load_settings(send_timeout=120, task_time_limit=60)


@pytest.mark.parametrize(
    ("env", "security", "port"),
    [("development", "none", 1025), ("production", "none", 25), ("production", "starttls", 587),
     ("development", "tls", 465)],
)  # fmt: skip
def test_default_smtp_port(env: str, security: str, port: int) -> None:
    settings = load_settings(notifier_env=env, smtp_security=security, mail_from="ops@example.org")
    assert settings.effective_smtp_port == port


def test_mail_from_must_hold_an_address_and_no_newlines() -> None:
    with pytest.raises(ConfigurationError, match="MAIL_FROM"):
        load_settings(mail_from="Nobody")
    with pytest.raises(ConfigurationError, match="MAIL_FROM"):
        load_settings(mail_from="a@example.com\r\nBcc: x@example.com")


def test_unknown_smtp_security_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_SECURITY", "ssl")
    with pytest.raises(ConfigurationError, match="SMTP_SECURITY"):
        load_settings()


def test_production_needs_an_explicit_mail_from() -> None:
    with pytest.raises(ConfigurationError, match="MAIL_FROM must be set in production"):
        load_settings(notifier_env="production")
    assert load_settings(notifier_env="production", mail_from="ops@example.org").is_production

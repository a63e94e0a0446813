"""Bounce settings: what start-up refuses, and how lists are read from the environment."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.errors import ConfigurationError
from notifier.settings import load_settings

PRODUCTION: dict[str, Any] = {
    "notifier_env": "production",
    "mail_from": "Acme <noreply@acme.example>",
    "api_keys": ["ops:0123456789abcdef:send+read"],
    "smtp_security": "starttls",
}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"bounce_domain": "bounces.acme.example"}, "SECRET_KEY"),
        ({"secret_key": "short"}, "SECRET_KEY"),
        ({"sns_cert_url_pattern": r"^http://127\.0\.0\.1:\d+/"}, "SNS_CERT_URL_PATTERN"),
    ],
)
def test_production_refuses_unsafe_bounce_settings(
    overrides: dict[str, Any], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SECRET_KEY", "BOUNCE_DOMAIN", "SNS_CERT_URL_PATTERN", "API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match=named):
        load_settings(**PRODUCTION, **overrides)


def test_production_with_a_long_secret_is_fine() -> None:
    settings = load_settings(
        **PRODUCTION, bounce_domain="bounces.acme.example", secret_key="x" * 40
    )
    assert settings.signing_secret == b"x" * 40


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"bounce_domain": "not a domain"}, "BOUNCE_DOMAIN"),
        ({"sns_cert_url_pattern": "(unclosed"}, "SNS_CERT_URL_PATTERN"),
        ({"postmark_webhook_username": "user"}, "POSTMARK_WEBHOOK"),
        ({"soft_bounce_limit": 0}, "SOFT_BOUNCE_LIMIT"),
        ({"bounce_smtp_port": 70000}, "BOUNCE_SMTP_PORT"),
    ],
)
def test_bad_values_are_named(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        load_settings(**overrides)


def test_topic_arns_are_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SES_SNS_TOPIC_ARNS", " arn:aws:sns:a:1:x , arn:aws:sns:b:2:y,")
    assert load_settings().ses_sns_topic_arns == ["arn:aws:sns:a:1:x", "arn:aws:sns:b:2:y"]


def test_default_sns_pattern_only_allows_amazon_https() -> None:
    import re

    pattern = re.compile(load_settings().sns_cert_url_pattern)
    assert pattern.match("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem")
    assert pattern.match("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-2.pem")
    for bad in (
        "http://sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com/x.pem?redirect=https://evil",
    ):
        assert not pattern.match(bad), bad

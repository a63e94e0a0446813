"""Issue 14 (hardening): the pure parts, tested without servers."""

from __future__ import annotations

import pytest

from notifier.compose.addresses import check_custom_headers
from notifier.errors import ConfigurationError, InvalidNotification
from notifier.settings import load_settings


@pytest.mark.parametrize(
    "name", ["X-SMTPAPI", "x-smtpapi", "X-Mailgun-Variables", "X-SES-CONFIGURATION-SET", "X-PM-Tag"]
)
def test_relay_control_headers_are_refused(name: str) -> None:
    with pytest.raises(InvalidNotification) as caught:
        check_custom_headers({name: '{"to": ["hidden@example.com"]}'})
    assert caught.value.field == f"headers.{name}"


def test_ordinary_custom_headers_pass() -> None:
    assert check_custom_headers({"X-Campaign": "spring"}) == {"X-Campaign": "spring"}


PRODUCTION = {"notifier_env": "production", "mail_from": "ops@example.org", "api_keys": "k"}


@pytest.mark.parametrize("security", ["none"])
def test_production_refuses_clear_text_smtp_auth(security: str) -> None:
    with pytest.raises(ConfigurationError, match="SMTP_SECURITY=none with SMTP_USERNAME"):
        load_settings(
            **PRODUCTION,
            smtp_host="smtp.example.org",
            smtp_security=security,
            smtp_username="user",
            smtp_password="pw",
        )
    # Toward this machine nothing crosses a network; without credentials nothing leaks.
    load_settings(**PRODUCTION, smtp_host="127.0.0.1", smtp_username="u", smtp_password="p")
    load_settings(**PRODUCTION, smtp_host="smtp.example.org")


def test_production_refuses_unvalidated_smtp_certificates() -> None:
    with pytest.raises(ConfigurationError, match="SMTP_VALIDATE_CERTS=false"):
        load_settings(**PRODUCTION, smtp_security="tls", smtp_validate_certs=False)
    load_settings(smtp_security="tls", smtp_validate_certs=False)  # development: allowed

"""Issue 14 (hardening): the pure parts, tested without servers."""

from __future__ import annotations

import pytest

from notifier.compose.addresses import check_custom_headers
from notifier.errors import InvalidNotification


@pytest.mark.parametrize(
    "name", ["X-SMTPAPI", "x-smtpapi", "X-Mailgun-Variables", "X-SES-CONFIGURATION-SET", "X-PM-Tag"]
)
def test_relay_control_headers_are_refused(name: str) -> None:
    with pytest.raises(InvalidNotification) as caught:
        check_custom_headers({name: '{"to": ["hidden@example.com"]}'})
    assert caught.value.field == f"headers.{name}"


def test_ordinary_custom_headers_pass() -> None:
    assert check_custom_headers({"X-Campaign": "spring"}) == {"X-Campaign": "spring"}

"""Error classification: transient versus permanent, keeping code and recipient."""

from __future__ import annotations

import aiosmtplib
import pytest

from notifier.delivery.classify import classify_reply, classify_smtp_error
from notifier.errors import PermanentDeliveryError, TransientDeliveryError


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (aiosmtplib.SMTPRecipientRefused(451, "later", "a@x.org"), TransientDeliveryError, 451),
        (aiosmtplib.SMTPRecipientRefused(550, "unknown", "a@x.org"), PermanentDeliveryError, 550),
        (aiosmtplib.SMTPDataError(552, "too big"), PermanentDeliveryError, 552),
        (aiosmtplib.SMTPDataError(421, "closing"), TransientDeliveryError, 421),
        (aiosmtplib.SMTPSenderRefused(553, "bad sender", "me@x.org"), PermanentDeliveryError, 553),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), PermanentDeliveryError, 535),
        (aiosmtplib.SMTPAuthenticationError(454, "try later"), TransientDeliveryError, 454),
        (aiosmtplib.SMTPServerDisconnected("gone"), TransientDeliveryError, None),
        (aiosmtplib.SMTPConnectError("refused"), TransientDeliveryError, None),
        (aiosmtplib.SMTPReadTimeoutError("slow"), TransientDeliveryError, None),
        (ConnectionResetError("reset"), TransientDeliveryError, None),
        (TimeoutError(), TransientDeliveryError, None),
        (aiosmtplib.SMTPNotSupported("no STARTTLS"), PermanentDeliveryError, None),
    ],
)  # fmt: skip
def test_classification(
    exc: aiosmtplib.SMTPException | OSError, kind: type, code: int | None
) -> None:
    error = classify_smtp_error(exc)
    assert type(error) is kind
    assert error.code == code


def test_an_unknown_exception_is_not_classified() -> None:
    # A bug is not a delivery failure: calling it permanent would fail the mail silently.
    with pytest.raises(TypeError, match="not an SMTP or network error"):
        classify_smtp_error(ValueError("odd"))  # type: ignore[arg-type]


def test_recipient_is_kept() -> None:
    error = classify_smtp_error(aiosmtplib.SMTPRecipientRefused(550, "unknown", "bob@x.org"))
    assert error.recipient == "bob@x.org"


def test_all_refused_is_transient_when_any_refusal_is() -> None:
    exc = aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(550, "unknown", "a@x.org"),
            aiosmtplib.SMTPRecipientRefused(452, "mailbox full", "b@x.org"),
        ]
    )
    error = classify_smtp_error(exc)
    assert isinstance(error, TransientDeliveryError) and error.code == 452


def test_reply_text_carries_code() -> None:
    assert str(classify_reply(450, "greylisted")) == "450 greylisted"

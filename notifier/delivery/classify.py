"""Error classification: turn an SMTP or network error into a transient or permanent one."""

from __future__ import annotations

import ssl

import aiosmtplib

from notifier.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

__all__ = ["classify_reply", "classify_smtp_error"]


def classify_reply(code: int, message: str, *, recipient: str | None = None) -> DeliveryError:
    """An SMTP reply code as an error: 4xx is transient, 5xx (and anything odd) permanent."""
    text = f"{code} {message}".strip()
    if 400 <= code < 500:
        return TransientDeliveryError(text, code=code, recipient=recipient)
    return PermanentDeliveryError(text, code=code, recipient=recipient)


def classify_smtp_error(exc: aiosmtplib.SMTPException | OSError) -> DeliveryError:
    """Map an SMTP or network error to a DeliveryError subclass, keeping code and recipient.

    Anything else is not a delivery failure but a bug, and is refused with TypeError rather
    than called permanent: the caller lets it surface.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        # Every recipient refused: transient if any of them may be accepted later.
        refusals = exc.recipients
        transient = [r for r in refusals if 400 <= r.code < 500]
        chosen = transient[0] if transient else refusals[0]
        return classify_reply(chosen.code, chosen.message, recipient=chosen.recipient)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return classify_reply(exc.code, exc.message, recipient=exc.recipient)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # A 535 from AUTH is a configuration problem, but a 454 is the server being busy.
        return classify_reply(exc.code, f"authentication failed: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 421 at any stage means the server is closing the connection: retry later.
        return classify_reply(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentDeliveryError(f"server does not support what we need: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(f"TLS certificate rejected: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        # Dropped or refused connections, timeouts (TimeoutError is an OSError), protocol noise.
        return TransientDeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": "))
    raise TypeError(f"not an SMTP or network error: {type(exc).__name__}: {exc}")

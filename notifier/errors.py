"""The one exception hierarchy of notifier.

Retry decisions read the *type* of an error, never its message text::

    NotifierError
    ├── ConfigurationError            settings or rules refused at start-up
    ├── InvalidNotification           bad input; carries the offending ``field``
    │   └── HeaderInjection           CR/LF in a header-bound value
    ├── TemplateError
    │   ├── TemplateNotFound          unknown template name
    │   └── TemplateRenderError       the template failed while rendering
    │       └── MissingVariable       a variable the template needs was not given
    ├── InvalidEvent                  an event envelope that does not validate
    ├── NotificationNotFound          no record with that id
    ├── InvalidTransition             e.g. retrying a notification that has not failed
    ├── IdempotencyConflict           same Idempotency-Key, different body
    ├── StoreUnavailable              Redis cannot be reached (also a ConnectionError)
    ├── UnsafeWebhookUrl              a webhook URL notifier must not call; carries ``url``
    ├── WebhookEndpointNotFound       no webhook endpoint with that id
    ├── InvalidWebhookSignature       a received webhook that does not verify
    ├── InvalidUnsubscribeToken       a forged, damaged or expired unsubscribe link
    ├── WebhookRejected               an inbound provider webhook failed auth; carries ``status``
    ├── InvalidSuppressionCsv         a suppression CSV with bad rows; carries ``errors``
    └── DeliveryError                 an SMTP attempt did not deliver; carries code and recipient
        ├── TransientDeliveryError    4xx, refused/reset connection, timeout: retry later
        ├── PermanentDeliveryError    5xx: retrying will not help
        └── NotificationFailed        a task's notification ended ``failed`` (Celery FAILURE)

Delivery errors keep ``code`` and ``recipient`` in their ``args``, so they survive Celery's
JSON result serialisation: ``AsyncResult.result`` rebuilds them with both.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "HeaderInjection",
    "IdempotencyConflict",
    "InvalidEvent",
    "InvalidNotification",
    "InvalidSuppressionCsv",
    "InvalidTransition",
    "InvalidUnsubscribeToken",
    "InvalidWebhookSignature",
    "MissingVariable",
    "NotificationFailed",
    "NotificationNotFound",
    "NotifierError",
    "PermanentDeliveryError",
    "StoreUnavailable",
    "TemplateError",
    "TemplateNotFound",
    "TemplateRenderError",
    "TransientDeliveryError",
    "UnsafeWebhookUrl",
    "WebhookEndpointNotFound",
    "WebhookRejected",
    "describe_error",
]


class NotifierError(Exception):
    """Root of every error notifier raises on purpose."""


class ConfigurationError(NotifierError):
    """Settings, templates or event rules that the service refuses to start with."""


class InvalidNotification(NotifierError, ValueError):
    """A notification that cannot be accepted; ``field`` names the offending input."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class HeaderInjection(InvalidNotification):
    """A header-bound value contains CR or LF."""


class TemplateError(NotifierError):
    """A template problem; ``template`` names it."""

    def __init__(self, message: str, *, template: str | None = None) -> None:
        super().__init__(message)
        self.template = template


class TemplateNotFound(TemplateError):
    """No template by that name."""


class TemplateRenderError(TemplateError):
    """The template raised while rendering (sandbox violation, bad filter, ...)."""


class MissingVariable(TemplateRenderError):
    """The template uses a variable the context does not provide."""

    def __init__(self, message: str, *, template: str | None = None, variable: str) -> None:
        super().__init__(message, template=template)
        self.variable = variable


class InvalidEvent(NotifierError, ValueError):
    """An event envelope that does not validate; ``field`` names the offending attribute."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotificationNotFound(NotifierError, LookupError):
    """No notification record with the given id."""

    def __init__(self, notification_id: str) -> None:
        super().__init__(f"no notification with id {notification_id!r}")
        self.notification_id = notification_id


class InvalidTransition(NotifierError):
    """The requested change does not apply to the notification's current status."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class IdempotencyConflict(NotifierError):
    """An Idempotency-Key reused with a different request body."""

    def __init__(self, key: str, *, original_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request body")
        self.key = key
        self.original_id = original_id


class StoreUnavailable(NotifierError, ConnectionError):
    """Redis could not be reached; the request may be retried later."""


class UnsafeWebhookUrl(NotifierError, ValueError):
    """A webhook endpoint URL that is malformed, not https in production, or internal."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"the URL {reason}")
        self.url = url
        self.reason = reason


class InvalidWebhookSignature(NotifierError, ValueError):
    """A webhook request whose signature, id or timestamp does not verify (or is too old)."""


class WebhookEndpointNotFound(NotifierError, LookupError):
    """No webhook endpoint with the given id (or not one the caller may see)."""

    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"no webhook endpoint with id {endpoint_id!r}")
        self.endpoint_id = endpoint_id


class WebhookRejected(NotifierError):
    """A provider webhook whose signature or credentials do not check out (401 or 403)."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class InvalidSuppressionCsv(NotifierError, ValueError):
    """A suppression CSV with bad rows; ``errors`` lists ``{"field": "row[N]", "message"}``."""

    def __init__(self, message: str, *, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class InvalidUnsubscribeToken(NotifierError, ValueError):
    """An unsubscribe token that does not verify (forged or damaged) or has ``expired``."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class DeliveryError(NotifierError):
    """An SMTP attempt that did not deliver.

    ``code`` is the SMTP reply code when the server gave one, ``recipient`` the
    address it refers to when the failure was about one recipient.
    """

    # Positional too: Celery stores an exception as its ``args`` and rebuilds it with
    # ``cls(*args)``, so code and recipient must be args to come back from the result backend.
    def __init__(self, message: str, code: int | None = None, recipient: str | None = None) -> None:
        super().__init__(message, code, recipient)
        self.code = code
        self.recipient = recipient

    def __str__(self) -> str:
        return str(self.args[0])


class TransientDeliveryError(DeliveryError):
    """Worth retrying: 4xx replies, refused or dropped connections, timeouts."""


class PermanentDeliveryError(DeliveryError):
    """Not worth retrying: 5xx replies, invalid messages."""


class NotificationFailed(DeliveryError):
    """Raised by a Celery task whose notification ended ``failed``, so Celery records FAILURE.

    Carries the last attempt's SMTP ``code`` and ``recipient`` (None when the notification
    was refused before any attempt, e.g. an invalid request).
    """


def describe_error(exc: NotifierError) -> str:
    """One line: the field an input error names, then the message."""
    field = getattr(exc, "field", None)
    text = str(exc)
    return f"{field}: {text}" if field and not text.startswith(field) else text

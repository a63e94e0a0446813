"""Signed unsubscribe tokens over recipient + category, and the List-Unsubscribe URIs.

itsdangerous signs them with SECRET_KEY; tokens signed with SECRET_KEY_PREVIOUS still verify,
so rotating the key does not break links already in mailboxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from notifier.errors import InvalidUnsubscribeToken
from notifier.settings import Settings

__all__ = [
    "MAILTO_LOCAL_PART",
    "UnsubscribeToken",
    "mailto_uri",
    "make_token",
    "public_base_url",
    "read_token",
    "unsubscribe_uris",
]

#: Keeps these tokens apart from anything else signed with SECRET_KEY (VERP, webhooks).
_SALT = "notifier.unsubscribe.v1"


@dataclass(frozen=True, slots=True)
class UnsubscribeToken:
    """What a token says: who, which category, and the locale its page is shown in."""

    recipient: str
    category: str
    locale: str


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    # itsdangerous signs with the last key and accepts any of them.
    keys = [*settings.previous_signing_secrets, settings.signing_secret]
    return URLSafeTimedSerializer(keys, salt=_SALT)


def make_token(settings: Settings, *, recipient: str, category: str, locale: str) -> str:
    """A URL-safe token for ``recipient`` leaving ``category``."""
    return _serializer(settings).dumps({"r": recipient, "c": category, "l": locale})


def read_token(settings: Settings, token: str) -> UnsubscribeToken:
    """Verify ``token``; raises InvalidUnsubscribeToken (``expired`` set when only too old)."""
    if settings.is_production and settings.secret_key is None:
        # The development key is public: a token it verifies proves nothing.
        raise InvalidUnsubscribeToken("unsubscribe links need SECRET_KEY in production")
    max_age = int(settings.unsubscribe_token_max_age_days * 86400)
    try:
        data: Any = _serializer(settings).loads(token, max_age=max_age)
    except SignatureExpired:
        raise InvalidUnsubscribeToken("the unsubscribe link has expired", expired=True) from None
    except BadSignature:
        raise InvalidUnsubscribeToken("the unsubscribe link is not valid") from None
    if not (
        isinstance(data, dict)
        and all(isinstance(data.get(key), str) and data.get(key) for key in ("r", "c", "l"))
    ):
        raise InvalidUnsubscribeToken("the unsubscribe link is not valid")
    return UnsubscribeToken(recipient=data["r"], category=data["c"], locale=data["l"])


def public_base_url(settings: Settings) -> str:
    """PUBLIC_URL without a trailing slash; in development the local API by default."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://localhost:{settings.api_port}"


#: The mailto form's local part: ``unsubscribe@BOUNCE_DOMAIN?subject=<token>``. The token
#: goes in the subject: it is longer than the 64 characters a local part may have.
MAILTO_LOCAL_PART = "unsubscribe"


def mailto_uri(token: str, *, domain: str) -> str:
    return f"mailto:{MAILTO_LOCAL_PART}@{domain}?subject={token}"


def unsubscribe_uris(
    settings: Settings, *, recipient: str, category: str, locale: str
) -> tuple[str, ...]:
    """The List-Unsubscribe URIs: the one-click ``{PUBLIC_URL}/u/{token}``, and with
    BOUNCE_DOMAIN a mailto the bounce receiver takes."""
    token = make_token(settings, recipient=recipient, category=category, locale=locale)
    uris = [f"{public_base_url(settings)}/u/{token}"]
    if settings.bounce_domain:
        uris.append(mailto_uri(token, domain=settings.bounce_domain))
    return tuple(uris)

"""Deliverability settings: DKIM signing keys and headers, unsubscribe links and their tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from notifier.settings.base import HOSTNAME, SettingsBase, split_commas

__all__ = ["DEFAULT_DKIM_HEADERS", "DeliverabilitySettings"]

#: Header fields DKIM signs by default: what a recipient sees, and the unsubscribe headers,
#: which RFC 8058 requires to be signed.
DEFAULT_DKIM_HEADERS = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


class DeliverabilitySettings(SettingsBase):
    """DKIM signing, unsubscribe links and their tokens."""

    dkim_domain: str | None = None
    dkim_selector: str | None = None
    #: The signing key as PEM (RSA) or base64 (Ed25519); or DKIM_PRIVATE_KEY_FILE, not both.
    dkim_private_key: SecretStr | None = None
    dkim_private_key_file: Path | None = None
    #: A second key for dual signing (RFC 8463: e.g. RSA plus Ed25519), same domain.
    dkim_secondary_selector: str | None = None
    dkim_secondary_private_key: SecretStr | None = None
    dkim_secondary_private_key_file: Path | None = None
    #: Header fields the signatures cover (absent ones are signed as absent).
    dkim_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_DKIM_HEADERS)
    )
    #: Public base URL of the API, for unsubscribe links: https in production.
    public_url: str | None = None
    #: The SECRET_KEY before the last rotation: its unsubscribe links keep working while set.
    secret_key_previous: SecretStr | None = None
    #: How long an unsubscribe link stays valid.
    unsubscribe_token_max_age_days: float = Field(365.0, gt=0)

    @field_validator("dkim_headers", mode="before")
    @classmethod
    def _split_dkim_headers(cls, value: object) -> object:
        return split_commas(value)

    def _check_deliverability(self) -> None:
        """Run by Settings' model validator, in the order the checks were written."""
        if self.dkim_domain is not None and not HOSTNAME.match(self.dkim_domain):
            raise ValueError(f"DKIM_DOMAIN must be a domain name, got {self.dkim_domain!r}")
        if self.dkim_headers and "from" not in {h.lower() for h in self.dkim_headers}:
            raise ValueError("DKIM_HEADERS must include From (RFC 6376 section 5.4)")
        if self.public_url is not None:
            scheme = self.public_url.partition("://")[0].lower()
            if scheme not in ("http", "https") or "://" not in self.public_url:
                raise ValueError(f"PUBLIC_URL must be an http(s) URL, got {self.public_url!r}")
            if self.is_production and scheme != "https":
                raise ValueError(
                    "PUBLIC_URL must be https in production: mailbox providers only follow "
                    "https one-click unsubscribe links (RFC 8058)"
                )

    @property
    def previous_signing_secrets(self) -> list[bytes]:
        """SECRET_KEY_PREVIOUS as bytes, when set: tokens it signed are still accepted."""
        if self.secret_key_previous is None:
            return []
        return [self.secret_key_previous.get_secret_value().encode()]

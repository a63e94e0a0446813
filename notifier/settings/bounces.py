"""Bounce settings: the receiver, VERP signing key, soft-bounce policy and provider webhooks."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from notifier.settings.base import HOSTNAME, SettingsBase, split_commas

__all__ = ["BounceSettings"]


class BounceSettings(SettingsBase):
    """Bounces, complaints and the suppression list."""

    #: HMAC key for the tokens notifier hands out (VERP senders); production requires it.
    secret_key: SecretStr | None = None
    #: Domain whose MX is the bounce receiver; set, the envelope sender is bounces+TOKEN@it.
    bounce_domain: str | None = None
    bounce_smtp_host: str = "127.0.0.1"
    bounce_smtp_port: int = Field(2525, gt=0, lt=65536)
    bounce_max_message_bytes: int = Field(10 * 1024 * 1024, gt=0)
    #: Inbound mail the receiver could not classify: how many are kept (oldest dropped).
    bounce_unclassified_max: int = Field(1000, ge=1)
    soft_bounce_limit: int = Field(3, ge=1)
    #: Seconds within which SOFT_BOUNCE_LIMIT soft bounces suppress an address.
    soft_bounce_window: float = Field(7 * 86400.0, gt=0)
    #: SNS topics whose SES notifications are accepted (empty: the SES webhook is off).
    ses_sns_topic_arns: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Where SNS signing certificates may be fetched from (a regular expression on the URL).
    sns_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]+\.pem$"
    #: SendGrid's Event Webhook verification key (base64 DER; empty: the webhook is off).
    sendgrid_webhook_public_key: str | None = None
    postmark_webhook_username: str | None = None
    postmark_webhook_password: SecretStr | None = None

    @field_validator("ses_sns_topic_arns", mode="before")
    @classmethod
    def _split_topic_arns(cls, value: object) -> object:
        return split_commas(value)

    def _check_bounces(self) -> None:
        """Run by Settings' model validator, in the order the checks were written."""
        try:
            re.compile(self.sns_cert_url_pattern)
        except re.error as exc:
            raise ValueError(f"SNS_CERT_URL_PATTERN is not a regular expression: {exc}") from None
        if self.bounce_domain is not None and not HOSTNAME.match(self.bounce_domain):
            raise ValueError(f"BOUNCE_DOMAIN must be a domain name, got {self.bounce_domain!r}")
        if (self.postmark_webhook_username is None) != (self.postmark_webhook_password is None):
            raise ValueError("POSTMARK_WEBHOOK_USERNAME and POSTMARK_WEBHOOK_PASSWORD go together")
        if self.is_production:
            if self.bounce_domain and self.secret_key is None:
                raise ValueError(
                    "SECRET_KEY must be set in production when BOUNCE_DOMAIN is: it signs the "
                    "bounce addresses"
                )
            if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
                raise ValueError("SECRET_KEY must be at least 32 characters in production")
            if not self.sns_cert_url_pattern.startswith("^https://"):
                raise ValueError(
                    "SNS_CERT_URL_PATTERN must start with ^https:// in production: a "
                    "certificate fetched over plain HTTP proves nothing"
                )

    @property
    def signing_secret(self) -> bytes:
        """SECRET_KEY as bytes; development without one uses a fixed, public key."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return b"notifier-development-secret-not-for-production"

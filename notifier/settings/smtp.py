"""SMTP settings: the relay, its security and credentials, and the sender address."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from notifier.settings.base import SettingsBase, is_loopback

__all__ = ["DEFAULT_SMTP_PORTS", "DEV_INBOX_SMTP_PORT", "SmtpSettings"]

#: Ports used when ``SMTP_PORT`` is not set, by ``SMTP_SECURITY``.
DEFAULT_SMTP_PORTS = {"none": 25, "starttls": 587, "tls": 465}
#: The development inbox's SMTP port (``notifier dev`` and MailHog both listen there).
DEV_INBOX_SMTP_PORT = 1025


class SmtpSettings(SettingsBase):
    """The SMTP relay notifier sends through, and the From address."""

    smtp_host: str = "localhost"
    smtp_port: int | None = Field(None, gt=0, lt=65536)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_validate_certs: bool = True
    #: The relay offers SMTPUTF8 (RFC 6531); false: non-ASCII local parts are refused at intake.
    smtp_utf8: bool = True
    smtp_timeout: float = Field(10.0, gt=0)
    smtp_max_messages_per_connection: int = Field(1000, gt=0)
    send_timeout: float = Field(60.0, gt=0)
    mail_from: str = "Notifier <notifier@example.com>"

    @field_validator("mail_from")
    @classmethod
    def _check_mail_from(cls, value: str) -> str:
        from notifier.compose.addresses import parse_address
        from notifier.errors import InvalidNotification

        try:
            parse_address(value, field="MAIL_FROM")
        except InvalidNotification as exc:
            raise ValueError(str(exc)) from None
        return value

    def _check_production(self) -> None:
        """Run by Settings' model validator, in the order the checks were written."""
        if not self.is_production:
            return
        if "mail_from" not in self.model_fields_set:
            raise ValueError("MAIL_FROM must be set in production (the default is a placeholder)")
        credentials = self.smtp_username is not None or self.smtp_password is not None
        if credentials and self.smtp_security == "none" and not is_loopback(self.smtp_host):
            raise ValueError(
                f"SMTP_SECURITY=none with SMTP_USERNAME/SMTP_PASSWORD toward {self.smtp_host} "
                "would send the password in clear text; set SMTP_SECURITY=starttls or tls in "
                "production"
            )
        if not self.smtp_validate_certs:
            raise ValueError(
                "SMTP_VALIDATE_CERTS=false is refused in production: anyone on the path could "
                "pose as the relay and read the credentials and the mail"
            )

    @property
    def effective_smtp_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        if not self.is_production and self.smtp_security == "none":
            return DEV_INBOX_SMTP_PORT
        return DEFAULT_SMTP_PORTS[self.smtp_security]

    @property
    def sending_lease_seconds(self) -> float:
        """How long a claim to send a notification holds before another delivery may take over."""
        return self.send_timeout + 30.0

    @property
    def mail_from_address(self) -> str:
        return parseaddr(self.mail_from)[1]

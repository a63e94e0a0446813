"""Settings: one pydantic-settings class read from the environment and an optional ``.env``."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from notifier.errors import ConfigurationError

__all__ = [
    "API_SCOPES",
    "ApiKeySpec",
    "RateLimit",
    "Settings",
    "get_settings",
    "is_loopback",
    "load_settings",
    "parse_api_key",
]

_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$")

#: Ports used when ``SMTP_PORT`` is not set, by ``SMTP_SECURITY``.
DEFAULT_SMTP_PORTS = {"none": 25, "starttls": 587, "tls": 465}
#: The development inbox's SMTP port (``notifier dev`` and MailHog both listen there).
DEV_INBOX_SMTP_PORT = 1025


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

#: What an API key may do: send, read its records, retry/cancel them, see everyone's.
API_SCOPES = ("send", "read", "manage", "admin")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """One ``API_KEYS`` entry: ``name:secret:scope+scope`` or a bare secret (every scope)."""

    name: str
    secret: str
    scopes: frozenset[str]


def parse_api_key(text: str) -> ApiKeySpec:
    """Parse one ``API_KEYS`` entry; raises ValueError naming what is wrong (never the secret).

    A bare secret (no ``:``) keeps working as a key with every scope; its name is a short hash
    of the secret, the same value that scoped its idempotency keys and rate bucket before.
    """
    if ":" not in text:
        name = hashlib.sha256(text.encode()).hexdigest()[:16]
        return ApiKeySpec(name=name, secret=text, scopes=frozenset(API_SCOPES))
    name, _, rest = text.partition(":")
    secret, _, scope_text = rest.rpartition(":")
    if not _KEY_NAME.match(name):
        raise ValueError(
            "entries must be name:secret:scope+scope (name: letters, digits, '_', '.', '-') "
            "or a bare secret without ':'"
        )
    if not secret:
        raise ValueError(f"key {name!r}: the secret is empty (expected name:secret:scope+scope)")
    scopes = [scope.strip() for scope in scope_text.split("+")]
    unknown = [scope for scope in scopes if scope not in API_SCOPES]
    if unknown or not scope_text:
        named = ", ".join(map(repr, unknown)) or "''"
        raise ValueError(
            f"key {name!r}: unknown scope {named}; scopes are {', '.join(API_SCOPES)} "
            "joined with '+'"
        )
    return ApiKeySpec(name=name, secret=secret, scopes=frozenset(scopes))


class RateLimit:
    """A parsed ``RATE_LIMIT`` such as ``100/second``: ``limit`` requests per ``period`` seconds."""

    __slots__ = ("limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE_PATTERN.match(text)
        if not match or int(match.group(1)) <= 0:
            raise ValueError(
                f"RATE_LIMIT must look like '100/second' or '6000/minute', got {text!r}"
            )
        return cls(int(match.group(1)), _RATE_UNITS[match.group(2)])

    @property
    def per_second(self) -> float:
        return self.limit / self.period

    def __repr__(self) -> str:
        return f"RateLimit({self.limit}/{self.period:g}s)"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (clear-text SMTP there never crosses a network)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


class Settings(BaseSettings):
    """Every knob of the service; the README's configuration table lists them all."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    notifier_env: Literal["development", "production"] = "development"

    # Redis: broker, result backend and notification records.
    redis_url: str = "redis://localhost:6379/0"
    redis_prefix: str = "notifier"
    broker_visibility_timeout: int = Field(3600, gt=0)
    # Redis over TLS (a rediss:// REDIS_URL): CA bundle, client certificate for mutual TLS.
    redis_tls_ca_file: Path | None = None
    redis_tls_cert_file: Path | None = None
    redis_tls_key_file: Path | None = None
    redis_tls_verify: bool = True
    # Redis Sentinel: "host:port,host:port"; REDIS_URL then gives only credentials and db.
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_sentinel_master: str | None = None
    redis_sentinel_username: str | None = None
    redis_sentinel_password: SecretStr | None = None
    #: The API answers 202 once this many replicas hold the write (WAIT; 0: do not wait).
    redis_wait_replicas: int = Field(0, ge=0)
    redis_wait_timeout_ms: int = Field(100, ge=1)

    # SMTP.
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

    # Templates and events.
    templates_dir: Path = Path("templates")
    default_locale: str = "en"
    events_file: Path | None = None

    # Retries.
    retry_backoff_base: float = Field(2.0, gt=0)
    retry_backoff_max: float = Field(300.0, gt=0)
    retry_max_attempts: int = Field(5, ge=1)
    task_time_limit: int = Field(120, gt=0)

    # Limits.
    max_recipients: int = Field(50, ge=1)
    max_attachments: int = Field(10, ge=0)
    max_attachments_bytes: int = Field(10 * 1024 * 1024, ge=0)
    #: Content types attachments may have, e.g. "application/pdf,image/*" (empty: any).
    attachment_content_types: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_batch_size: int = Field(500, ge=1)
    #: How deeply a template context may nest, and its size as JSON.
    max_context_depth: int = Field(32, ge=1, le=200)
    max_context_bytes: int = Field(1024 * 1024, ge=1)
    batch_chunk_size: int = Field(50, ge=1, le=1000)
    #: SMTP connections each worker process may hold to the relay (its pool's size).
    smtp_connections_per_process: int = Field(16, ge=1, le=256)
    #: Tasks (sends) each worker process runs at once; the broker prefetch is this times -c.
    sends_in_flight_per_process: int = Field(32, ge=1, le=1000)

    # Records and scheduling.
    record_retention_days: float = Field(7.0, gt=0)
    scheduler_interval: float = Field(1.0, gt=0)
    #: Seconds without progress after which a pending notification's message is presumed lost.
    recovery_after: float = Field(900.0, gt=0)

    # HTTP API.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    rate_limit: RateLimit | None = None
    #: Failed authentications (a wrong key) allowed per client address; then 429 (empty: off).
    auth_failure_limit: RateLimit | None = Field(RateLimit(20, 60.0), validate_default=False)
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, gt=0, lt=65536)

    # Logging.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_recipients: bool = False

    # Metrics: a worker serves its processes' Prometheus metrics here (0 or empty: off).
    #: Celery task events, which Flower needs; they cost the worker's main process CPU per task.
    worker_events: bool = False
    worker_metrics_port: int = Field(0, ge=0, lt=65536)
    worker_metrics_host: str = "0.0.0.0"

    # Bounces, complaints and the suppression list.
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

    # Outbound webhooks (notifier.webhooks).
    #: Seconds one webhook request may take (connect, send, answer) before it counts as failed.
    webhook_timeout: float = Field(10.0, gt=0)
    #: Delays in seconds before each retry of a webhook (the first try is immediate).
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    #: Seconds of continuous failure after which an endpoint is disabled (5 days).
    webhook_disable_after: float = Field(5 * 86400.0, gt=0)
    #: Allow endpoint URLs resolving to loopback/private/link-local addresses (unset: not in
    #: production).
    webhook_allow_private: bool | None = None
    #: How much of a receiver's response body is read and kept in the delivery log.
    webhook_response_max_bytes: int = Field(4096, ge=0, le=1024 * 1024)
    #: Seconds a rotated-out secret keeps signing, beside the new one.
    webhook_secret_grace: float = Field(86400.0, ge=0)
    #: Webhook requests each worker process runs at once (the rest wait on the schedule).
    webhook_concurrency_per_process: int = Field(4, ge=1, le=256)
    #: Delivery attempts kept per endpoint for GET .../attempts.
    webhook_log_size: int = Field(1000, ge=1)

    # Deliverability: DKIM signing, unsubscribe links and their tokens.
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

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("attachment_content_types", mode="before")
    @classmethod
    def _split_content_types(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip().lower() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                major, slash, minor = str(item).partition("/")
                if not (major and slash and minor) or "*" in major:
                    raise ValueError(f"entries must be 'type/subtype' or 'type/*', got {item!r}")
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        names: set[str] = set()
        secrets: set[str] = set()
        for key in value:
            spec = parse_api_key(key.get_secret_value())
            if spec.name in names:
                raise ValueError(f"key name {spec.name!r} is used twice")
            if spec.secret in secrets:
                raise ValueError(f"key {spec.name!r} repeats another key's secret")
            names.add(spec.name)
            secrets.add(spec.secret)
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                host, _, port = str(item).rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"REDIS_SENTINELS entries must be host:port, got {item!r}")
        return value

    @field_validator("rate_limit", "auth_failure_limit", mode="before")
    @classmethod
    def _parse_rate_limit(cls, value: object) -> object:
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, str):
            return RateLimit.parse(value) if value.strip() else None
        raise ValueError("RATE_LIMIT must be a string such as '100/second'")

    @field_validator("worker_metrics_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: object) -> object:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

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

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if not self.is_production:
            return self
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
        return self

    @model_validator(mode="after")
    def _check_redis(self) -> Settings:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINELS is")
        if not self.redis_url.startswith(("redis://", "rediss://")):
            raise ValueError("REDIS_URL must start with redis:// or rediss:// (TLS)")
        if self.is_production and not self.redis_tls_verify:
            raise ValueError(
                "REDIS_TLS_VERIFY=false is refused in production: anyone on the path could "
                "read the credentials and the mail"
            )
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ValueError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
        for name in ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}: no such file: {path}")
        return self

    @model_validator(mode="after")
    def _check_timing(self) -> Settings:
        # A message the broker hands out stays invisible to other workers for this long; a
        # task still waiting or running past it is handed out again and may be sent twice.
        longest = self.retry_backoff_max + self.task_time_limit
        if self.broker_visibility_timeout <= longest:
            raise ValueError(
                f"BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout}s) must be longer "
                f"than RETRY_BACKOFF_MAX ({self.retry_backoff_max:g}s) + TASK_TIME_LIMIT "
                f"({self.task_time_limit}s) = {longest:g}s"
            )
        if self.send_timeout >= self.task_time_limit:
            raise ValueError(
                f"SEND_TIMEOUT ({self.send_timeout:g}s) must be shorter than "
                f"TASK_TIME_LIMIT ({self.task_time_limit}s)"
            )
        if self.retry_backoff_base > self.retry_backoff_max:
            raise ValueError(
                f"RETRY_BACKOFF_BASE ({self.retry_backoff_base:g}s) must not exceed "
                f"RETRY_BACKOFF_MAX ({self.retry_backoff_max:g}s)"
            )
        return self

    @field_validator("dkim_headers", mode="before")
    @classmethod
    def _split_dkim_headers(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _check_deliverability(self) -> Settings:
        if self.dkim_domain is not None and not _HOSTNAME.match(self.dkim_domain):
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
        return self

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_retry_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_retry_schedule(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("WEBHOOK_RETRY_SCHEDULE delays must not be negative")
        return value

    @model_validator(mode="after")
    def _check_webhook_timeout(self) -> Settings:
        # The request runs inside the delivery task; past TASK_TIME_LIMIT the task is cancelled.
        if self.webhook_timeout < self.task_time_limit:
            return self
        if "webhook_timeout" not in self.model_fields_set:
            # Only the default is too long (a short TASK_TIME_LIMIT): fit it, do not refuse.
            self.webhook_timeout = self.task_time_limit / 2
        else:
            raise ValueError(
                f"WEBHOOK_TIMEOUT ({self.webhook_timeout:g}s) must be shorter than "
                f"TASK_TIME_LIMIT ({self.task_time_limit}s)"
            )
        return self

    @field_validator("ses_sns_topic_arns", mode="before")
    @classmethod
    def _split_topic_arns(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _check_bounces(self) -> Settings:
        try:
            re.compile(self.sns_cert_url_pattern)
        except re.error as exc:
            raise ValueError(f"SNS_CERT_URL_PATTERN is not a regular expression: {exc}") from None
        if self.bounce_domain is not None and not _HOSTNAME.match(self.bounce_domain):
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
        return self

    # Derived values.

    @property
    def is_production(self) -> bool:
        return self.notifier_env == "production"

    @property
    def webhook_private_allowed(self) -> bool:
        """WEBHOOK_ALLOW_PRIVATE, defaulting to true in development and false in production."""
        if self.webhook_allow_private is None:
            return not self.is_production
        return self.webhook_allow_private

    @property
    def effective_smtp_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        if not self.is_production and self.smtp_security == "none":
            return DEV_INBOX_SMTP_PORT
        return DEFAULT_SMTP_PORTS[self.smtp_security]

    @property
    def effective_events_file(self) -> Path:
        return (
            self.events_file if self.events_file is not None else self.templates_dir / "events.toml"
        )

    @property
    def record_retention_seconds(self) -> int:
        return int(self.record_retention_days * 86400)

    @property
    def sending_lease_seconds(self) -> float:
        """How long a claim to send a notification holds before another delivery may take over."""
        return self.send_timeout + 30.0

    @property
    def mail_from_address(self) -> str:
        return parseaddr(self.mail_from)[1]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs."""
        pairs = (item.rpartition(":") for item in self.redis_sentinels)
        return [(host.strip("[]"), int(port)) for host, _, port in pairs]

    @property
    def signing_secret(self) -> bytes:
        """SECRET_KEY as bytes; development without one uses a fixed, public key."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return b"notifier-development-secret-not-for-production"

    @property
    def previous_signing_secrets(self) -> list[bytes]:
        """SECRET_KEY_PREVIOUS as bytes, when set: tokens it signed are still accepted."""
        if self.secret_key_previous is None:
            return []
        return [self.secret_key_previous.get_secret_value().encode()]

    def api_key_specs(self) -> list[ApiKeySpec]:
        """API_KEYS parsed: name, secret and scopes of each key."""
        return [parse_api_key(key.get_secret_value()) for key in self.api_keys]

    def api_key_values(self) -> list[str]:
        """The secrets alone (what logs must never show)."""
        return [spec.secret for spec in self.api_key_specs()]


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises ConfigurationError naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from exc


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (after any fork)."""
    return load_settings()

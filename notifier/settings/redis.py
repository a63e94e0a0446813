"""Redis settings: the broker and record store's URL, TLS, Sentinel and replica acknowledgement;
and RabbitMQ as the broker instead (BROKER_URL, BROKER_TLS_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from notifier.settings.base import SettingsBase, split_commas

__all__ = ["RedisSettings"]


class RedisSettings(SettingsBase):
    """Redis: broker, result backend and notification records."""

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
    #: RabbitMQ as the broker (amqp:// or amqps://); records stay in REDIS_URL. Empty: Redis.
    broker_url: str = ""
    # RabbitMQ over TLS (an amqps:// BROKER_URL): CA bundle, client certificate for mutual TLS.
    broker_tls_ca_file: Path | None = None
    broker_tls_cert_file: Path | None = None
    broker_tls_key_file: Path | None = None
    broker_tls_verify: bool = True

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        value = split_commas(value)
        if isinstance(value, list):
            for item in value:
                host, _, port = str(item).rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"REDIS_SENTINELS entries must be host:port, got {item!r}")
        return value

    def _check_redis(self) -> None:
        """Run by Settings' model validator, in the order the checks were written."""
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINELS is")
        if not self.redis_url.startswith(("redis://", "rediss://")):
            raise ValueError("REDIS_URL must start with redis:// or rediss:// (TLS)")
        if self.broker_url and not self.uses_amqp:
            raise ValueError("BROKER_URL must start with amqp:// or amqps:// (or be empty: Redis)")
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
        self._check_broker_tls()

    def _check_broker_tls(self) -> None:
        files = ("broker_tls_ca_file", "broker_tls_cert_file", "broker_tls_key_file")
        given = [name.upper() for name in files if getattr(self, name) is not None]
        if not self.broker_uses_tls:
            # With an amqp:// (or no) BROKER_URL they would silently do nothing: say so.
            if not self.broker_tls_verify:
                given.append("BROKER_TLS_VERIFY")
            if given:
                named = ", ".join(given)
                raise ValueError(f"{named}: only for an amqps:// BROKER_URL (RabbitMQ over TLS)")
            return
        if self.is_production and not self.broker_tls_verify:
            raise ValueError(
                "BROKER_TLS_VERIFY=false is refused in production: anyone on the path could "
                "read the broker credentials and the mail"
            )
        if (self.broker_tls_cert_file is None) != (self.broker_tls_key_file is None):
            raise ValueError("BROKER_TLS_CERT_FILE and BROKER_TLS_KEY_FILE go together")
        for name in files:
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}: no such file: {path}")

    @property
    def uses_amqp(self) -> bool:
        """Whether task messages go through RabbitMQ (BROKER_URL) rather than Redis."""
        return self.broker_url.startswith(("amqp://", "amqps://"))

    @property
    def broker_uses_tls(self) -> bool:
        """Whether BROKER_URL is RabbitMQ over TLS (amqps://)."""
        return self.broker_url.startswith("amqps://")

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs."""
        pairs = (item.rpartition(":") for item in self.redis_sentinels)
        return [(host.strip("[]"), int(port)) for host, _, port in pairs]

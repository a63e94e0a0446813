"""HTTP API settings: API keys with scopes, rate limits and where the API listens."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from notifier.settings.base import SettingsBase, split_commas

__all__ = ["API_SCOPES", "ApiKeySpec", "ApiSettings", "RateLimit", "parse_api_key"]

_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$")

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


class ApiSettings(SettingsBase):
    """The HTTP API: keys, rate limits, listening address."""

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    rate_limit: RateLimit | None = None
    #: Failed authentications (a wrong key) allowed per client address; then 429 (empty: off).
    auth_failure_limit: RateLimit | None = Field(RateLimit(20, 60.0), validate_default=False)
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, gt=0, lt=65536)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        return split_commas(value)

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

    @field_validator("rate_limit", "auth_failure_limit", mode="before")
    @classmethod
    def _parse_rate_limit(cls, value: object) -> object:
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, str):
            return RateLimit.parse(value) if value.strip() else None
        raise ValueError("RATE_LIMIT must be a string such as '100/second'")

    def api_key_specs(self) -> list[ApiKeySpec]:
        """API_KEYS parsed: name, secret and scopes of each key."""
        return [parse_api_key(key.get_secret_value()) for key in self.api_keys]

    def api_key_values(self) -> list[str]:
        """The secrets alone (what logs must never show)."""
        return [spec.secret for spec in self.api_key_specs()]

"""API-key authentication and the per-key rate limit."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from dataclasses import dataclass

from starlette.requests import Request

from api.problems import ApiProblem
from notifier.errors import ConfigurationError
from notifier.settings import Settings

__all__ = ["ApiKeys", "check_auth_config", "presented_key"]

log = logging.getLogger(__name__)


def key_scope(key: str) -> str:
    """A short, non-reversible name for a key: scopes idempotency keys and rate buckets."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The configured keys, as bytes for constant-time comparison, with their scopes."""

    keys: tuple[tuple[bytes, str], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        return cls(tuple((key.encode(), key_scope(key)) for key in settings.api_key_values()))

    @property
    def open(self) -> bool:
        return not self.keys

    def scope_of(self, presented: str) -> str | None:
        """The scope of the matching key; every key is compared, so timing says nothing."""
        candidate = presented.encode()
        found = None
        for key, scope in self.keys:
            if hmac.compare_digest(candidate, key):
                found = scope
        return found


def check_auth_config(settings: Settings) -> None:
    """Refuse production without keys; warn that development without keys is open."""
    if settings.api_key_values():
        return
    if settings.is_production:
        raise ConfigurationError(
            "NOTIFIER_ENV=production but API_KEYS is empty: the API would accept requests "
            "from anyone. Set API_KEYS to a comma-separated list of secret keys."
        )
    log.warning("API_KEYS is not set: the HTTP API accepts requests without authentication")


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(
        401,
        detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="notifier"'},
    )


def rate_limited(retry_after: float) -> ApiProblem:
    seconds = max(1, math.ceil(retry_after))
    return ApiProblem(
        429,
        f"Rate limit exceeded; retry in {seconds} s.",
        slug="rate-limited",
        headers={"Retry-After": str(seconds)},
    )

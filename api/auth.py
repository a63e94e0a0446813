"""API-key authentication: named keys with scopes, and who may see which record."""

from __future__ import annotations

import hmac
import logging
import math
from dataclasses import dataclass

from starlette.requests import Request

from api.problems import ApiProblem
from notifier.settings import API_SCOPES, Settings

__all__ = [
    "ApiKeys",
    "Caller",
    "forbidden",
    "presented_key",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key's name (owner of what it creates) and its scopes."""

    name: str
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def owner(self) -> str | None:
        """The owner written on records this caller creates (None without keys: open API)."""
        return None if self is OPEN_CALLER else self.name

    def sees(self, owner: str | None) -> bool:
        """Whether a record or task created by ``owner`` is visible to this caller."""
        return self.admin or (owner is not None and owner == self.name)


#: The caller when no API keys are configured (development only): everything is open.
OPEN_CALLER = Caller(name="open", scopes=frozenset(API_SCOPES))


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The configured keys, as bytes for constant-time comparison, with their callers."""

    keys: tuple[tuple[bytes, Caller], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        return cls(
            tuple(
                (spec.secret.encode(), Caller(spec.name, spec.scopes))
                for spec in settings.api_key_specs()
            )
        )

    @property
    def open(self) -> bool:
        return not self.keys

    def caller_of(self, presented: str) -> Caller | None:
        """The caller whose key matches; every key is compared, so timing says nothing."""
        candidate = presented.encode()
        found = None
        for key, caller in self.keys:
            if hmac.compare_digest(candidate, key):
                found = caller
        return found


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


def forbidden(caller: Caller, scope: str) -> ApiProblem:
    return ApiProblem(
        403,
        f"The API key {caller.name!r} lacks the {scope!r} scope this operation needs.",
        slug="forbidden",
        required_scope=scope,
    )


def rate_limited(retry_after: float) -> ApiProblem:
    seconds = max(1, math.ceil(retry_after))
    return ApiProblem(
        429,
        f"Rate limit exceeded; retry in {seconds} s.",
        slug="rate-limited",
        headers={"Retry-After": str(seconds)},
    )

"""Per-app services and the dependency aliases endpoints declare (``SettingsDep``, ...)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends
from starlette.requests import Request

from api.auth import (
    OPEN_CALLER,
    ApiKeys,
    Caller,
    forbidden,
    presented_key,
    rate_limited,
    unauthorized,
)
from api.problems import ApiProblem
from notifier.compose.rendering import TemplateRenderer
from notifier.events.rules import RuleSet
from notifier.settings import Settings, is_loopback
from notifier.storage.ratelimit import RateLimiter
from notifier.storage.store import NotificationStore

__all__ = [
    "AdminCaller",
    "ApiKeyDep",
    "ManageCaller",
    "ReadCaller",
    "RedisDep",
    "RendererDep",
    "SendCaller",
    "Services",
    "SettingsDep",
    "StoreDep",
    "authenticate",
    "require",
]


@dataclass(slots=True)
class Services:
    """What an app creates once: settings and renderer at build time, Redis in the lifespan."""

    settings: Settings
    renderer: TemplateRenderer
    api_keys: ApiKeys
    rules: RuleSet | None = None
    redis: aioredis.Redis | None = None
    store: NotificationStore | None = None
    limiter: RateLimiter | None = None
    #: Failed authentications per client address (AUTH_FAILURE_LIMIT).
    auth_limiter: RateLimiter | None = None
    #: Client address -> monotonic time until which this process answers it 429 unread.
    auth_blocked: dict[str, float] = field(default_factory=dict)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def _settings(request: Request) -> Settings:
    return services(request).settings


async def _renderer(request: Request) -> TemplateRenderer:
    return services(request).renderer


async def _store(request: Request) -> NotificationStore:
    store = services(request).store
    assert store is not None, "the app's lifespan has not run"
    return store


async def _redis(request: Request) -> aioredis.Redis:
    redis = services(request).redis
    assert redis is not None, "the app's lifespan has not run"
    return redis


async def authenticate(request: Request) -> Caller:
    """Check the API key and the rate limit; returns the caller (everything open without keys).

    Raises a 401 problem for a missing or unknown key and a 429 over the rate limit.
    """
    found = services(request)
    if found.api_keys.open:
        # Fail closed when served without keys on a non-loopback address some other way
        # than ``notifier api`` (which refuses to bind): answer nobody.
        server = request.scope.get("server")
        if not server or not is_loopback(str(server[0])):
            raise unauthorized("API_KEYS is not set: this API answers only on a loopback address.")
        caller = OPEN_CALLER
    else:
        client = request.client.host if request.client else "unknown"
        blocked_until = found.auth_blocked.get(client)
        if blocked_until is not None:
            # Checked before the key, so a client guessing keys learns nothing while blocked.
            wait = blocked_until - time.monotonic()
            if wait > 0:
                raise rate_limited(wait)
            del found.auth_blocked[client]
        key = presented_key(request)
        if key is None:
            raise unauthorized(
                "An API key is required: 'Authorization: Bearer <key>' or X-API-Key."
            )
        matched = found.api_keys.caller_of(key)
        if matched is None:
            await _count_auth_failure(found, client)
            raise unauthorized("The API key is not valid.")
        caller = matched
    if found.limiter is not None:
        decision = await found.limiter.hit(_bucket(request, caller))
        if not decision.allowed:
            raise rate_limited(decision.retry_after)
    return caller


async def _count_auth_failure(found: Services, client: str) -> None:
    """Take a token from the client's failure bucket; over AUTH_FAILURE_LIMIT, block it (429).

    The bucket is shared in Redis by every API process; the block is remembered here, so a
    blocked client costs no Redis round trip.
    """
    if found.auth_limiter is None:
        return
    decision = await found.auth_limiter.hit(f"authfail:{client}")
    if not decision.allowed:
        if len(found.auth_blocked) > 10_000:
            now = time.monotonic()
            for stale in [c for c, until in found.auth_blocked.items() if until <= now]:
                del found.auth_blocked[stale]
        found.auth_blocked[client] = time.monotonic() + decision.retry_after
        raise rate_limited(decision.retry_after)


async def charge(request: Request, caller: Caller, cost: int) -> None:
    """Take ``cost`` more tokens from the caller's rate bucket (a batch pays per notification).

    :func:`authenticate` already took one for the request itself.
    """
    limiter = services(request).limiter
    if limiter is None or cost <= 0:
        return
    if cost + 1 > limiter.rate.limit:
        raise ApiProblem.invalid(
            "notifications",
            f"{cost + 1} notifications exceed RATE_LIMIT's burst of {limiter.rate.limit}; "
            "send fewer per batch",
        )
    decision = await limiter.hit(_bucket(request, caller), cost=cost)
    if not decision.allowed:
        raise rate_limited(decision.retry_after)


def _bucket(request: Request, caller: Caller) -> str:
    if caller is OPEN_CALLER:
        return f"open:{request.client.host if request.client else 'unknown'}"
    return caller.name


def require(scope: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the authenticated caller, or a 403 problem when its key lacks ``scope``."""

    async def dependency(
        request: Request, caller: Annotated[Caller, Depends(authenticate)]
    ) -> Caller:
        if scope not in caller.scopes:
            raise forbidden(caller, scope)
        return caller

    dependency.__name__ = f"require_{scope}"
    return dependency


# The dependencies above are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency
# in its thread pool, a thread hand-off per dependency per request (measured: ~15 % of the
# API's CPU and most of its p99 under 16 concurrent connections).
SettingsDep = Annotated[Settings, Depends(_settings)]
RendererDep = Annotated[TemplateRenderer, Depends(_renderer)]
StoreDep = Annotated[NotificationStore, Depends(_store)]
RedisDep = Annotated[aioredis.Redis, Depends(_redis)]
#: The authenticated caller, whatever its scopes.
ApiKeyDep = Annotated[Caller, Depends(authenticate)]
#: The authenticated caller, having the named scope (else 403).
SendCaller = Annotated[Caller, Depends(require("send"))]
ReadCaller = Annotated[Caller, Depends(require("read"))]
ManageCaller = Annotated[Caller, Depends(require("manage"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]

"""The FastAPI application: ``uvicorn api.main:app`` or ``create_app(settings)``."""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import ApiKeys
from api.deps import Services
from api.problems import install_problem_handlers, install_problem_openapi, problem_response
from api.replication import ReplicaWait
from api.responses import OrjsonResponse
from api.routes import (
    events,
    health,
    inbound_webhooks,
    metrics,
    notifications,
    preferences,
    seed,
    suppressions,
    templates,
    unsubscribe,
    webhooks,
)
from notifier.settings import Settings, get_settings
from notifier.startup import check_auth_config, load_event_rules, load_renderer
from notifier.storage.connection import connect_async
from notifier.storage.ratelimit import RateLimiter
from notifier.storage.sink import message_sink
from notifier.storage.store import NotificationStore

__all__ = ["BodySizeLimit", "create_app"]

DESCRIPTION = """\
Send email notifications through notifier's workers.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>` (keys come from
`API_KEYS`). Errors are RFC 9457 `application/problem+json` bodies; validation problems list
the offending fields in `errors`.
"""


class BodySizeLimit:
    """Answer 413 to a body over ``limit`` bytes, by Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._too_large(scope, receive, send)
                    return
        # Read the body here (the endpoint would read all of it anyway) so that a body
        # without Content-Length, or lying about it, is cut off at the limit.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            f"The request body exceeds the limit of {self.limit} bytes (MAX_BODY_BYTES).",
            slug="body-too-large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One Redis client per app, opened on the server's event loop."""
    services: Services = app.state.services
    settings = services.settings
    redis = connect_async(settings)
    services.redis = redis
    sink = message_sink(settings)  # RabbitMQ (BROKER_URL): publish after the record's write
    services.store = NotificationStore(
        redis,
        prefix=settings.redis_prefix,
        retention_seconds=settings.record_retention_seconds,
        sink=sink,
    )
    if settings.rate_limit is not None:
        services.limiter = RateLimiter(redis, settings.rate_limit, prefix=settings.redis_prefix)
    if settings.auth_failure_limit is not None:
        services.auth_limiter = RateLimiter(
            redis, settings.auth_failure_limit, prefix=settings.redis_prefix
        )
    # Everything built so far (app, routes, compiled templates, pydantic models) lives as long
    # as the process: keep it out of the garbage collector's full passes, which otherwise
    # walk it and stall every request in flight (the API's p99).
    gc.freeze()
    try:
        yield
    finally:
        services.redis = services.store = services.limiter = services.auth_limiter = None
        await redis.aclose()
        if sink is not None:
            sink.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; raises ConfigurationError for settings it refuses to serve with.

    Templates and event rules are loaded (and checked) here, once; Redis is connected in
    the lifespan.
    """
    settings = settings or get_settings()
    check_auth_config(settings)
    renderer = load_renderer(settings)
    services = Services(
        settings=settings,
        renderer=renderer,
        api_keys=ApiKeys.from_settings(settings),
        rules=load_event_rules(settings, renderer),
    )
    app = FastAPI(
        title="notifier",
        description=DESCRIPTION,
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.services = services
    install_problem_handlers(app)
    install_problem_openapi(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    if settings.redis_wait_replicas:
        app.add_middleware(ReplicaWait, services=services)
    routes = (health, notifications, templates, seed, events, metrics)
    for module in (*routes, suppressions, inbound_webhooks, preferences, unsubscribe, webhooks):
        app.include_router(module.router)
    return app


@functools.cache
def _default_app() -> FastAPI:
    return create_app()


def __getattr__(name: str) -> Any:
    # ``uvicorn api.main:app`` works, but importing this module reads no settings: the app
    # (and the settings it needs) is built on first access, after any fork.
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

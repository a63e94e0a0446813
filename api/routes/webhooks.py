"""``/api/v1/webhooks/endpoints``: where notifier sends signed events, and their delivery log.

An endpoint belongs to the API key that created it and receives events about that key's
notifications only; an admin key's endpoints receive every key's events.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from api.auth import Caller
from api.deps import ManageCaller, ReadCaller, RedisDep, SettingsDep
from api.problems import COMMON_PROBLEMS, ApiProblem, problem_doc
from api.responses import OrjsonResponse
from notifier.errors import UnsafeWebhookUrl, WebhookEndpointNotFound
from notifier.settings import Settings
from notifier.webhooks.events import EVENT_TYPES
from notifier.webhooks.models import Endpoint
from notifier.webhooks.signing import new_secret
from notifier.webhooks.store import WebhookStore
from notifier.webhooks.urls import check_url

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/webhooks/endpoints", tags=["webhooks"])

_EXAMPLE: dict[str, Any] = {
    "id": "ep_5f0c2d9e4b7a1c3e8d6f2a10",
    "url": "https://example.com/hooks/notifier",
    "event_types": ["notification.failed", "notification.bounced"],
    "description": "mark addresses unverified",
    "owner": "billing",
    "disabled": False,
    "disabled_reason": None,
    "created": "2025-01-01T10:00:00Z",
    "failing_since": None,
    "secret_rotation_ends": None,
}


async def webhook_store(redis: RedisDep, settings: SettingsDep) -> WebhookStore:
    return WebhookStore(
        redis, prefix=settings.redis_prefix, retention_seconds=settings.record_retention_seconds
    )


StoreDep = Annotated[WebhookStore, Depends(webhook_store)]
#: An endpoint id as this API hands them out.
EndpointId = Annotated[str, Path(pattern=r"^ep_[0-9a-f]{24}$")]


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def endpoint_json(endpoint: Endpoint, *, secret: str | None = None) -> dict[str, Any]:
    now = time.time()
    grace = [s.expires for s in endpoint.secrets if s.expires is not None and s.expires > now]
    data: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "owner": endpoint.owner,
        "disabled": endpoint.disabled,
        "disabled_reason": endpoint.disabled_reason or None,
        "created": _iso(endpoint.created),
        "failing_since": _iso(endpoint.failing_since),
        "secret_rotation_ends": _iso(max(grace)) if grace else None,
    }
    if secret is not None:
        data["secret"] = secret
    return data


def _check_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = [t for t in value if t not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s) {unknown}; known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(value))


class EndpointIn(BaseModel):
    """What ``POST /api/v1/webhooks/endpoints`` takes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks/notifier",
                    "event_types": ["notification.failed"],
                    "description": "failures only",
                }
            ]
        },
    )

    url: str = Field(max_length=2048)
    event_types: list[str] = Field(
        default_factory=list,
        max_length=len(EVENT_TYPES),
        description=f"Only these types; empty for all. Known: {', '.join(EVENT_TYPES)}.",
    )
    description: str = Field("", max_length=500)

    _types = field_validator("event_types")(_check_types)


class EndpointPatch(BaseModel):
    """What ``PATCH`` changes; fields left out stay. ``disabled: false`` re-enables."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048)
    event_types: list[str] | None = Field(None, max_length=len(EVENT_TYPES))
    description: str | None = Field(None, max_length=500)
    disabled: bool | None = None

    _types = field_validator("event_types")(_check_types)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float | None = Field(
        None, ge=0, le=30 * 86400, description="Default WEBHOOK_SECRET_GRACE (24 h)."
    )


class ReplayIn(BaseModel):
    """Exactly one of: a ``message_id``, ``since`` (ISO 8601), or ``failed: true``."""

    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(None, max_length=100)
    since: datetime | None = None
    failed: bool = False


class EndpointOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: str
    url: str
    event_types: list[str]
    description: str
    owner: str | None
    disabled: bool
    disabled_reason: str | None
    created: str
    failing_since: str | None
    secret_rotation_ends: str | None
    secret: str | None = Field(None, description="Only when created or rotated: keep it.")


async def _checked_url(url: str, settings: Settings) -> str:
    try:
        await check_url(
            url, production=settings.is_production, allow_private=settings.webhook_private_allowed
        )
    except UnsafeWebhookUrl as exc:
        raise ApiProblem.invalid("url", str(exc)) from None
    return url


async def _owned(store: WebhookStore, endpoint_id: EndpointId, caller: Caller) -> Endpoint:
    """The endpoint, if the caller may see it; otherwise a 404 (its existence is not told)."""
    try:
        endpoint = await store.get_endpoint(endpoint_id)
    except WebhookEndpointNotFound:
        endpoint = None
    if endpoint is None or not caller.sees(endpoint.owner):
        raise ApiProblem(404, f"No webhook endpoint with id {endpoint_id!r}.", slug="not-found")
    return endpoint


_NOT_FOUND = problem_doc(404, "No such endpoint (or not this key's).")


@router.post(
    "",
    status_code=201,
    response_model=EndpointOut,
    summary="Add an endpoint; the answer holds its signing secret",
    responses={**problem_doc(422, "A bad or refused URL, or an unknown type."), **COMMON_PROBLEMS},
)
async def create_endpoint(
    body: EndpointIn, caller: ManageCaller, store: StoreDep, settings: SettingsDep
) -> Response:
    url = await _checked_url(body.url, settings)
    secret = new_secret()
    endpoint = await store.create_endpoint(
        url=url,
        event_types=body.event_types,
        description=body.description,
        owner=caller.owner,
        all_owners=caller.admin,
        secret=secret,
    )
    return OrjsonResponse(endpoint_json(endpoint, secret=secret), status_code=201)


@router.get(
    "",
    response_model=list[EndpointOut],
    summary="This key's endpoints (an admin key: all)",
    responses=COMMON_PROBLEMS,
)
async def list_endpoints(caller: ReadCaller, store: StoreDep) -> Response:
    found = [e for e in await store.list_endpoints() if caller.sees(e.owner)]
    return OrjsonResponse([endpoint_json(e) for e in found])


@router.get(
    "/{endpoint_id}",
    response_model=EndpointOut,
    summary="One endpoint",
    responses={**_NOT_FOUND, **COMMON_PROBLEMS},
)
async def get_endpoint(endpoint_id: EndpointId, caller: ReadCaller, store: StoreDep) -> Response:
    return OrjsonResponse(endpoint_json(await _owned(store, endpoint_id, caller)))


@router.patch(
    "/{endpoint_id}",
    response_model=EndpointOut,
    summary="Change url, types, description; disable or re-enable",
    responses={**_NOT_FOUND, **problem_doc(422, "A bad or refused URL."), **COMMON_PROBLEMS},
)
async def update_endpoint(
    endpoint_id: EndpointId,
    body: EndpointPatch,
    caller: ManageCaller,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    await _owned(store, endpoint_id, caller)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude_none=True)
    if "url" in changes:
        changes["url"] = await _checked_url(changes["url"], settings)
    if changes.get("disabled"):
        changes["disabled_reason"] = f"disabled by API key {caller.name!r}"
    try:
        endpoint = await store.update_endpoint(endpoint_id, **changes)
    except WebhookEndpointNotFound:
        raise ApiProblem(
            404, f"No webhook endpoint with id {endpoint_id!r}.", slug="not-found"
        ) from None
    return OrjsonResponse(endpoint_json(endpoint))


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    summary="Remove an endpoint, its delivery state and log",
    responses={**_NOT_FOUND, **COMMON_PROBLEMS},
)
async def delete_endpoint(
    endpoint_id: EndpointId, caller: ManageCaller, store: StoreDep
) -> Response:
    await _owned(store, endpoint_id, caller)
    with contextlib.suppress(WebhookEndpointNotFound):  # deleted meanwhile: the same outcome
        await store.delete_endpoint(endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=EndpointOut,
    summary="A new secret; the old one keeps signing (both signatures sent) for the grace period",
    responses={**_NOT_FOUND, **COMMON_PROBLEMS},
)
async def rotate_secret(
    endpoint_id: EndpointId,
    caller: ManageCaller,
    store: StoreDep,
    settings: SettingsDep,
    body: RotateIn | None = None,
) -> Response:
    await _owned(store, endpoint_id, caller)
    grace = settings.webhook_secret_grace
    if body is not None and body.grace_seconds is not None:
        grace = body.grace_seconds
    secret = new_secret()
    endpoint = await store.rotate_secret(endpoint_id, new_secret=secret, grace_seconds=grace)
    return OrjsonResponse(endpoint_json(endpoint, secret=secret))


@router.get(
    "/{endpoint_id}/attempts",
    summary="The delivery log, newest first",
    responses={**_NOT_FOUND, **COMMON_PROBLEMS},
)
async def list_attempts(
    endpoint_id: EndpointId,
    caller: ReadCaller,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    status: Annotated[str | None, Query(description="succeeded or failed")] = None,
    message_id: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Each attempt: message id, event type, attempt number, time, status, response code,
    duration, the start of the response body (WEBHOOK_RESPONSE_MAX_BYTES) and any error."""
    if status is not None and status not in ("succeeded", "failed"):
        raise ApiProblem.invalid("status", "must be succeeded or failed")
    await _owned(store, endpoint_id, caller)
    found = await store.attempts(endpoint_id, limit=1000 if status or message_id else limit)
    items = [
        {**a, "at": _iso(a["at"]), "next_attempt_at": _iso(a.get("next_attempt_at"))}
        for a in found
        if (status is None or a["status"] == status)
        and (message_id is None or a["message_id"] == message_id)
    ][:limit]
    return OrjsonResponse({"items": items})


@router.post(
    "/{endpoint_id}/replay",
    summary="Send messages again: one, all since a time, or all that failed",
    responses={**_NOT_FOUND, **problem_doc(422, "Not exactly one selector."), **COMMON_PROBLEMS},
)
async def replay(
    endpoint_id: EndpointId, body: ReplayIn, caller: ManageCaller, store: StoreDep
) -> Response:
    endpoint = await _owned(store, endpoint_id, caller)
    chosen = [body.message_id is not None, body.since is not None, body.failed]
    if sum(chosen) != 1:
        raise ApiProblem.invalid(None, "give exactly one of message_id, since, failed: true")
    if body.message_id is not None:
        message = await store.get_message(body.message_id)
        if message is None or not endpoint.wants(str(message["type"]), message.get("owner")):
            raise ApiProblem.invalid(
                "message_id", "no such message kept for this endpoint (or not one it receives)"
            )
        ids = [body.message_id]
    elif body.since is not None:
        since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
        ids = await store.messages_since(endpoint_id, since.timestamp())
    else:
        ids = await store.failed_messages(endpoint_id)
    replayed = await store.replay(endpoint_id, ids)
    return OrjsonResponse({"replayed": replayed, "expired": len(ids) - replayed})

"""``POST /api/v1/events``: publish an event over HTTP; the routing rules decide what is sent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from starlette.requests import Request
from starlette.responses import Response

from api.deps import RendererDep, SendCaller, SettingsDep, StoreDep, authenticate, services
from api.problems import COMMON_PROBLEMS, problem_doc
from api.responses import OrjsonResponse
from notifier.events.envelope import parse_event
from notifier.events.intake import handle_event
from notifier.events.rules import RuleSet

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["events"], dependencies=[Depends(authenticate)])

_EXAMPLE = {
    "specversion": "1.0",
    "type": "user.registered",
    "source": "/users",
    "id": "a8f0c7f2-1f0e-4a56-9d1b-0c1d2e3f4a5b",
    "data": {"email": "ada@example.com", "name": "Ada", "locale": "en"},
}
_RESULT_EXAMPLE = {
    "event_id": _EXAMPLE["id"],
    "notification_ids": ["3c1b7e8a-9d1f-5e2a-8b4c-6d7e8f9a0b1c"],
    "duplicate": False,
    "ignored": False,
    "failures": [],
}


async def _rules(request: Request) -> RuleSet:
    rules = services(request).rules
    assert rules is not None
    return rules


@router.post(
    "/events",
    status_code=202,
    summary="Publish an event (CloudEvents attribute names)",
    responses={
        202: {
            "description": "Routed: the notifications it produced are queued.",
            "content": {"application/json": {"example": _RESULT_EXAMPLE}},
        },
        200: {
            "description": "The same source + id was handled before; nothing new queued.",
            "content": {"application/json": {"example": {**_RESULT_EXAMPLE, "duplicate": True}}},
        },
        **problem_doc(422, "Invalid envelope; `errors` names the attribute."),
        **COMMON_PROBLEMS,
    },
)
async def publish_event(
    event: Annotated[
        dict[str, Any], Body(openapi_examples={"user.registered": {"value": _EXAMPLE}})
    ],
    caller: SendCaller,
    settings: SettingsDep,
    renderer: RendererDep,
    store: StoreDep,
    rules: Annotated[RuleSet, Depends(_rules)],
) -> Response:
    envelope = parse_event(event)  # InvalidEvent -> 422 problem
    result = await handle_event(
        envelope,
        store=store,
        renderer=renderer,
        rules=rules,
        settings=settings,
        via="api",
        owner=caller.owner,
    )
    return OrjsonResponse(result.as_dict(), status_code=200 if result.duplicate else 202)

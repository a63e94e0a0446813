"""``/api/v1/recipients/{address}/preferences``: which categories a recipient receives."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ManageCaller, RendererDep
from api.problems import COMMON_PROBLEMS, ApiProblem, problem_doc
from api.responses import OrjsonResponse
from api.routes.suppressions import SuppressionsDep
from notifier.compose.addresses import normalize_address
from notifier.compose.templates import TRANSACTIONAL
from notifier.unsubscribe.preferences import Preferences, read_preferences, update_preferences

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/recipients", tags=["preferences"])

_EXAMPLE: dict[str, Any] = {
    "address": "ada@example.com",
    "categories": {"digest": True, "product_updates": False},
    "unsubscribed_all": False,
    "blocked_by": None,
}


class PreferencesOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    address: str
    categories: dict[str, bool] = Field(
        description="Per unsubscribable category: true when the recipient receives it."
    )
    unsubscribed_all: bool = Field(description="Left every unsubscribable category.")
    blocked_by: str | None = Field(
        description="hard_bounce, complaint or manual: no mail at all goes to the address."
    )


class PreferencesIn(BaseModel):
    """What ``PUT`` takes; categories left out keep their state."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"categories": {"product_updates": False}}]},
    )

    categories: dict[str, bool] = Field(default_factory=dict)
    unsubscribed_all: bool | None = None


def _address(address: str) -> str:
    try:
        return normalize_address(address)
    except ValueError as exc:
        raise ApiProblem.invalid("address", str(exc)) from None


def _json(prefs: Preferences) -> OrjsonResponse:
    return OrjsonResponse(
        {
            "address": prefs.address,
            "categories": dict(prefs.categories),
            "unsubscribed_all": prefs.unsubscribed_all,
            "blocked_by": prefs.blocked_by,
        }
    )


@router.get(
    "/{address}/preferences",
    response_model=PreferencesOut,
    summary="A recipient's category preferences",
    responses={**problem_doc(422, "Not an email address."), **COMMON_PROBLEMS},
)
async def get_preferences(
    address: str, caller: ManageCaller, renderer: RendererDep, suppressions: SuppressionsDep
) -> OrjsonResponse:
    return _json(await read_preferences(suppressions, _address(address), renderer.categories()))


@router.put(
    "/{address}/preferences",
    response_model=PreferencesOut,
    summary="Change a recipient's category preferences",
    responses={
        **problem_doc(422, "Not an email address, or an unknown or transactional category."),
        **COMMON_PROBLEMS,
    },
)
async def put_preferences(
    address: str,
    body: PreferencesIn,
    caller: ManageCaller,
    renderer: RendererDep,
    suppressions: SuppressionsDep,
) -> OrjsonResponse:
    """Stored as suppression entries with reason ``unsubscribe`` (scope: the category, or the
    address for ``unsubscribed_all``); transactional mail is never affected."""
    normalized = _address(address)
    known = renderer.categories()
    for category in body.categories:
        if category == TRANSACTIONAL:
            raise ApiProblem.invalid(
                f"categories.{category}", "transactional mail cannot be unsubscribed from"
            )
        if category not in known:
            raise ApiProblem.invalid(
                f"categories.{category}",
                f"no template declares this category (known: {', '.join(known) or 'none'})",
            )
    prefs = await update_preferences(
        suppressions,
        normalized,
        categories=body.categories,
        unsubscribed_all=body.unsubscribed_all,
        source=f"api:{caller.name}",
        known=known,
    )
    return _json(prefs)

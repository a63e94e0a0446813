"""Liveness and readiness probes: open, no API key needed."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.deps import StoreDep
from api.problems import problem_doc
from api.responses import OrjsonResponse

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return OrjsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Redis is reachable",
    responses=problem_doc(503, "Redis unreachable; see Retry-After."),
)
async def readyz(store: StoreDep) -> Response:
    await store.ping()  # StoreUnavailable -> 503 problem
    return OrjsonResponse({"status": "ready"})

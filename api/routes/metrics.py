"""``GET /metrics`` for Prometheus: open, like ``/healthz``; never a 500 when Redis is down."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import services
from notifier.delivery.screening import refresh_suppression_gauge
from notifier.observability.metrics import (
    CONTENT_TYPE_LATEST,
    QueueSnapshot,
    read_queue_snapshot,
    render_metrics,
)

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # The store is None until the lifespan opened it; the scrape then reports Redis as down.
    store = services(request).store
    snapshot = await read_queue_snapshot(store) if store else QueueSnapshot(up=False)
    if store is not None and snapshot.up:
        await refresh_suppression_gauge(store)
    return Response(render_metrics(snapshot), media_type=CONTENT_TYPE_LATEST)

"""``/api/v1/notifications``: send one or many, read records, list dead letters, retry, cancel."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from starlette.requests import Request
from starlette.responses import Response

from api.auth import Caller, forbidden
from api.deps import (
    ManageCaller,
    ReadCaller,
    RendererDep,
    SendCaller,
    SettingsDep,
    StoreDep,
    charge,
)
from api.problems import COMMON_PROBLEMS, ApiProblem, field_errors_from_exception, problem_doc
from api.responses import OrjsonResponse
from api.schemas import (
    Accepted,
    BatchRequest,
    BatchResponse,
    NotificationOut,
    NotificationPage,
    RecordId,
    record_json,
)
from notifier.compose.requests import (
    Notification,
    NotificationRequest,
    parse_request,
    validate_notification,
)
from notifier.errors import (
    IdempotencyConflict,
    InvalidNotification,
    InvalidTransition,
    NotificationNotFound,
    TemplateError,
)
from notifier.intake import (
    accept_batch,
    accept_notification,
    cancel_notification,
    request_fingerprint,
    requeue_notification,
)
from notifier.storage.paging import parse_cursor
from notifier.storage.store import STATUSES, NotificationRecord, NotificationStore, RecordPage

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: Index entries a non-admin listing looks through per request before answering with a
#: shorter page (and a cursor to continue): other keys' records are skipped, not shown.
LIST_SCAN_BUDGET = 2000


async def visible_record(
    store: NotificationStore, notification_id: str, caller: Caller
) -> NotificationRecord:
    """The record, if this caller may see it; another key's record is "not found" (404)."""
    record = await store.get(notification_id)
    if not caller.sees(record.owner):
        raise NotificationNotFound(notification_id)
    return record


async def owned_page(
    store: NotificationStore, caller: Caller, *, status: str | None, limit: int, cursor: str | None
) -> RecordPage:
    """Up to ``limit`` of the caller's records, newest first, scanning at most the budget.

    Each store page is consumed whole, so its ``next_cursor`` is exact for what was skipped.
    """
    found: list[NotificationRecord] = []
    scanned = 0
    while True:
        want = limit - len(found)
        page = await store.list(status=status, limit=want, cursor=cursor)
        scanned += want
        found.extend(record for record in page.records if caller.sees(record.owner))
        cursor = page.next_cursor
        if cursor is None or len(found) >= limit or scanned >= LIST_SCAN_BUDGET:
            return RecordPage(records=tuple(found), next_cursor=cursor)


def location(notification_id: str) -> str:
    return f"/api/v1/notifications/{notification_id}"


def accepted_response(notification_id: str, status: str) -> Response:
    return OrjsonResponse(
        {"id": notification_id, "status": status},
        status_code=202,
        headers={"Location": location(notification_id)},
    )


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    summary="Send one notification",
    responses={
        **problem_doc(409, "Idempotency-Key reused with a different body."),
        **problem_doc(413, "Body larger than MAX_BODY_BYTES."),
        **problem_doc(422, "Invalid notification; `errors` names the fields."),
        **COMMON_PROBLEMS,
    },
)
async def create_notification(
    body: NotificationRequest,
    caller: SendCaller,
    settings: SettingsDep,
    renderer: RendererDep,
    store: StoreDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Repeat a request safely: the same key and body within 24 h "
            "return the original notification.",
        ),
    ] = None,
) -> Response:
    """Validate, store and queue a notification; answers 202 with its id and a Location."""
    if body.force and not caller.admin:
        raise forbidden(caller, "admin")
    notification = validate_notification(body, settings=settings, renderer=renderer)
    key = None
    if idempotency_key is not None:
        if not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise ApiProblem.invalid(
                "Idempotency-Key", "must be 1 to 255 printable ASCII characters, no spaces"
            )
        key = store.keys.idempotency(caller.name, idempotency_key)
    result = await accept_notification(
        store, notification, source="api", idempotency_key=key, owner=caller.owner
    )
    if result.status == "duplicate":
        assert idempotency_key is not None
        _, _, fingerprint = (result.idempotency_value or "").partition("|")
        if fingerprint != request_fingerprint(body):
            raise IdempotencyConflict(idempotency_key, original_id=result.id)
        record = await store.find(result.id)
        return accepted_response(result.id, record.status if record else "unknown")
    return accepted_response(result.id, result.status)


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchResponse,
    summary="Send up to MAX_BATCH_SIZE notifications",
    responses={
        **problem_doc(413, "Body larger than MAX_BODY_BYTES."),
        **problem_doc(422, "The batch itself is malformed or too large."),
        **COMMON_PROBLEMS,
    },
)
async def create_batch(
    body: BatchRequest,
    http_request: Request,
    caller: SendCaller,
    settings: SettingsDep,
    renderer: RendererDep,
    store: StoreDep,
) -> Response:
    """Each item is validated on its own; the valid ones are stored and queued together.

    Results come back in order. The accepted items are delivered in chunks of
    BATCH_CHUNK_SIZE per task message (``notifier.deliver_batch``).
    """
    items = body.notifications
    if len(items) > settings.max_batch_size:
        raise ApiProblem.invalid(
            "notifications", f"{len(items)} items; at most {settings.max_batch_size} per batch"
        )
    # The rate limit counts notifications, not requests: the request paid for one.
    await charge(http_request, caller, len(items) - 1)
    results: list[dict[str, Any]] = []
    valid: list[tuple[int, Notification]] = []
    for index, item in enumerate(items):
        try:
            request = parse_request(item)
            if request.force and not caller.admin:
                raise InvalidNotification(
                    "'force' (sending to suppressed addresses) needs the 'admin' scope",
                    field="force",
                )
            notification = validate_notification(request, settings=settings, renderer=renderer)
        except (InvalidNotification, TemplateError) as exc:
            results.append(
                {"index": index, "status": "rejected", "errors": field_errors_from_exception(exc)}
            )
        else:
            results.append({"index": index, "status": "pending"})
            valid.append((index, notification))

    # Every valid item's record and the chunk messages that deliver them: one atomic step
    # (Redis unreachable: nothing is written and the whole batch answers 503).
    outcomes = await accept_batch(
        store,
        [notification for _, notification in valid],
        source="api",
        chunk_size=settings.batch_chunk_size,
        owner=caller.owner,
    )
    accepted = 0
    for (index, _), outcome in zip(valid, outcomes, strict=True):
        accepted += 1
        results[index] = {"index": index, "id": outcome.id, "status": outcome.status}
    return OrjsonResponse(
        {"accepted": accepted, "rejected": len(items) - accepted, "results": results},
        status_code=202,
    )


@router.get(
    "",
    response_model=NotificationPage,
    summary="List notifications by status, newest first (status=failed: the dead letters)",
    responses={**problem_doc(422, "Unknown status or malformed cursor."), **COMMON_PROBLEMS},
)
async def list_notifications(
    caller: ReadCaller,
    store: StoreDep,
    status: Annotated[
        str | None,
        Query(
            description="Omit for all.",
            json_schema_extra={"enum": list(STATUSES)},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Response:
    if status is not None and status not in STATUSES:
        raise ApiProblem.invalid("status", f"must be one of {', '.join(STATUSES)}")
    if cursor:
        try:
            parse_cursor(cursor)
        except ValueError:
            raise ApiProblem.invalid("cursor", "not a cursor this API returned") from None
    if caller.admin:
        page = await store.list(status=status, limit=limit, cursor=cursor or None)
    else:
        page = await owned_page(store, caller, status=status, limit=limit, cursor=cursor or None)
    return OrjsonResponse(
        {"items": [record_json(r) for r in page.records], "next_cursor": page.next_cursor}
    )


@router.get(
    "/{notification_id}",
    response_model=NotificationOut,
    summary="One notification's record",
    responses={**problem_doc(404, "No notification with that id."), **COMMON_PROBLEMS},
)
async def get_notification(
    notification_id: RecordId, caller: ReadCaller, store: StoreDep
) -> Response:
    record = await visible_record(store, notification_id, caller)
    return OrjsonResponse(record_json(record))


@router.post(
    "/{notification_id}/retry",
    status_code=202,
    response_model=Accepted,
    summary="Requeue a failed notification (a dead letter)",
    responses={
        **problem_doc(404, "No notification with that id."),
        **problem_doc(409, "The notification has not failed."),
        **COMMON_PROBLEMS,
    },
)
async def retry_notification(
    notification_id: RecordId, caller: ManageCaller, store: StoreDep
) -> Response:
    await visible_record(store, notification_id, caller)
    try:
        await requeue_notification(store, notification_id)
    except InvalidTransition as exc:
        raise ApiProblem(
            409,
            f"notification {notification_id} is {exc.status}; only failed notifications "
            "can be retried",
            slug="invalid-transition",
            current_status=exc.status,
        ) from exc
    return accepted_response(notification_id, "queued")


@router.delete(
    "/{notification_id}",
    response_model=Accepted,
    summary="Cancel a notification that has not started sending",
    responses={
        **problem_doc(404, "No notification with that id."),
        **problem_doc(409, "Already sending, sent, failed or cancelled."),
        **COMMON_PROBLEMS,
    },
)
async def cancel(notification_id: RecordId, caller: ManageCaller, store: StoreDep) -> Response:
    await visible_record(store, notification_id, caller)
    try:
        await cancel_notification(store, notification_id)
    except InvalidTransition as exc:
        raise ApiProblem(
            409,
            f"notification {notification_id} is {exc.status}; only queued, scheduled or "
            "retrying notifications can be cancelled",
            slug="invalid-transition",
            current_status=exc.status,
        ) from exc
    return OrjsonResponse({"id": notification_id, "status": "cancelled"})

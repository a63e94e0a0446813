"""``/api/v1/suppressions``: the addresses mail is not sent to; list, read, put, delete, CSV."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from api.deps import ManageCaller, ReadCaller, RedisDep, SettingsDep
from api.problems import COMMON_PROBLEMS, ApiProblem, problem_doc
from api.responses import OrjsonResponse
from notifier.bounces import csvfile
from notifier.bounces.csvfile import iso
from notifier.compose.addresses import normalize_address
from notifier.storage.paging import parse_cursor
from notifier.storage.suppressions import (
    REASONS,
    SuppressionEntry,
    SuppressionStore,
    check_category,
)

__all__ = ["SuppressionsDep", "entry_json", "router", "suppression_store"]

router = APIRouter(prefix="/api/v1/suppressions", tags=["suppressions"])

_EXAMPLE: dict[str, Any] = {
    "address": "ada@example.com",
    "category": None,
    "reason": "hard_bounce",
    "source": "dsn",
    "created": "2025-01-01T10:00:00Z",
    "expires": None,
    "note": "550 5.1.1 <ada@example.com>: Recipient address rejected",
}


async def suppression_store(redis: RedisDep, settings: SettingsDep) -> SuppressionStore:
    return SuppressionStore(redis, prefix=settings.redis_prefix)


SuppressionsDep = Annotated[SuppressionStore, Depends(suppression_store)]


def parse_time(value: str, *, field: str) -> float:
    try:
        return csvfile.parse_time(value)
    except ValueError:
        raise ApiProblem.invalid(field, "must be an ISO 8601 date or time") from None


def entry_json(entry: SuppressionEntry) -> dict[str, Any]:
    return {
        "address": entry.address,
        "category": entry.category,
        "reason": entry.reason,
        "source": entry.source,
        "created": iso(entry.created),
        "expires": iso(entry.expires),
        "note": entry.note,
    }


class SuppressionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    address: str
    category: str | None
    reason: str
    source: str
    created: str
    expires: str | None
    note: str


class SuppressionPageOut(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None


class SuppressionIn(BaseModel):
    """What ``PUT /api/v1/suppressions/{address}`` takes."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("manual", description=f"One of: {', '.join(REASONS)}.")
    category: str | None = Field(None, description="Only this category of mail; omit for all.")
    expires: str | None = Field(None, description="ISO 8601 time after which it no longer applies.")
    note: str = Field("", max_length=1000)


def _address(address: str, field: str = "address") -> str:
    try:
        return normalize_address(address)
    except ValueError as exc:
        raise ApiProblem.invalid(field, str(exc)) from None


def _category(category: str | None, field: str = "category") -> str | None:
    try:
        return check_category(category)
    except ValueError as exc:
        raise ApiProblem.invalid(field, str(exc)) from None


def _not_found(address: str, category: str | None) -> ApiProblem:
    scope = f" for category {category!r}" if category else ""
    return ApiProblem(404, f"{address} is not on the suppression list{scope}.", slug="not-found")


@router.get(
    "",
    response_model=SuppressionPageOut,
    summary="List suppressed addresses, newest first",
    responses={**problem_doc(422, "A bad filter or cursor."), **COMMON_PROBLEMS},
)
async def list_suppressions(
    caller: ReadCaller,
    store: SuppressionsDep,
    reason: Annotated[str | None, Query(description=f"One of {', '.join(REASONS)}.")] = None,
    category: Annotated[str | None, Query(description="'' for entries without one.")] = None,
    domain: Annotated[str | None, Query(description="Only addresses at this domain.")] = None,
    source: Annotated[str | None, Query(description="dsn, arf, ses, sendgrid, api, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Response:
    if reason is not None and reason not in REASONS:
        raise ApiProblem.invalid("reason", f"must be one of {', '.join(REASONS)}")
    if category:
        _category(category)
    if cursor:
        try:
            parse_cursor(cursor)
        except ValueError:
            raise ApiProblem.invalid("cursor", "not a cursor this API returned") from None
    page = await store.page(
        limit=limit,
        cursor=cursor or None,
        reason=reason,
        category=category,
        domain=domain,
        source=source,
    )
    return OrjsonResponse(
        {"items": [entry_json(e) for e in page.entries], "next_cursor": page.next_cursor}
    )


@router.get(
    "/export",
    summary="Every entry as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **COMMON_PROBLEMS},
)
async def export_suppressions(caller: ReadCaller, store: SuppressionsDep) -> Response:
    """Columns: address, reason, category, source, created, expires, note (what import takes)."""

    async def rows() -> AsyncIterator[str]:
        yield csvfile.csv_line(csvfile.CSV_COLUMNS)
        cursor = None
        while True:
            page = await store.page(limit=500, cursor=cursor)
            for entry in page.entries:
                yield csvfile.csv_line(csvfile.entry_row(entry))
            cursor = page.next_cursor
            if cursor is None:
                return

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


@router.post(
    "/import",
    summary="Add or replace entries from CSV (text/csv body)",
    responses={**problem_doc(422, "Bad rows; `errors` names each (row[N])."), **COMMON_PROBLEMS},
)
async def import_suppressions(
    request: Request, caller: ManageCaller, store: SuppressionsDep
) -> Response:
    """Columns as export writes them; only ``address`` is required (reason defaults to
    ``manual``). Either every row is stored or, if any is invalid, none."""
    body = await request.body()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiProblem.invalid("body", "the CSV must be UTF-8") from None
    try:
        entries = csvfile.parse_csv(text, source=f"import:{caller.name}", now=time.time())
    except csvfile.InvalidSuppressionCsv as exc:
        raise ApiProblem(422, f"{exc}.", slug="validation-error", errors=exc.errors[:100]) from exc
    created = await store.put_many(entries)
    return OrjsonResponse(
        {"imported": len(entries), "created": created, "replaced": len(entries) - created}
    )


@router.get(
    "/{address}",
    response_model=SuppressionOut,
    summary="One suppressed address",
    responses={**problem_doc(404, "Not on the list."), **COMMON_PROBLEMS},
)
async def get_suppression(
    address: str,
    caller: ReadCaller,
    store: SuppressionsDep,
    category: Annotated[str | None, Query()] = None,
) -> Response:
    entry = await store.get(_address(address), _category(category))
    if entry is None:
        raise _not_found(address, category)
    return OrjsonResponse(entry_json(entry))


@router.put(
    "/{address}",
    response_model=SuppressionOut,
    summary="Add or replace an entry (201 when new, 200 when replaced)",
    responses={
        201: {"model": SuppressionOut, "description": "The entry was added."},
        **problem_doc(422, "A bad address or field."),
        **COMMON_PROBLEMS,
    },
)
async def put_suppression(
    address: str, body: SuppressionIn, caller: ManageCaller, store: SuppressionsDep
) -> Response:
    if body.reason not in REASONS:
        raise ApiProblem.invalid("reason", f"must be one of {', '.join(REASONS)}")
    now = time.time()
    expires = parse_time(body.expires, field="expires") if body.expires else None
    if expires is not None and expires <= now:
        raise ApiProblem.invalid("expires", "must be in the future")
    entry = SuppressionEntry(
        address=_address(address),
        category=_category(body.category),
        reason=body.reason,
        source=f"api:{caller.name}",
        created=now,
        expires=expires,
        note=body.note,
    )
    created = await store.put(entry)
    return OrjsonResponse(entry_json(entry), status_code=201 if created else 200)


@router.delete(
    "/{address}",
    status_code=204,
    response_class=Response,
    summary="Remove an entry: mail to the address is sent again",
    responses={**problem_doc(404, "Not on the list."), **COMMON_PROBLEMS},
)
async def delete_suppression(
    address: str,
    caller: ManageCaller,
    store: SuppressionsDep,
    category: Annotated[str | None, Query()] = None,
) -> Response:
    normalized = _address(address)
    if not await store.remove(normalized, _category(category)):
        raise _not_found(address, category)
    return Response(status_code=204)

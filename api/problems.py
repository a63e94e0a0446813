"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

A problem body carries ``type``, ``title``, ``status`` and ``detail``; validation problems add
``errors``, a list of ``{"field", "message"}``. Exception handlers here turn notifier's error
tree (and FastAPI's own validation and HTTP errors) into such bodies, so no endpoint answers a
bare 500 for something the service knows about.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api.responses import PROBLEM_MEDIA_TYPE, OrjsonResponse
from notifier.errors import (
    IdempotencyConflict,
    InvalidEvent,
    InvalidNotification,
    InvalidTransition,
    MissingVariable,
    NotificationNotFound,
    StoreUnavailable,
    TemplateError,
    TemplateNotFound,
)

__all__ = [
    "COMMON_PROBLEMS",
    "ApiProblem",
    "FieldError",
    "Problem",
    "field_errors_from_exception",
    "install_problem_handlers",
    "install_problem_openapi",
    "problem_doc",
    "problem_response",
    "validation_field",
]

log = logging.getLogger(__name__)

#: Seconds a client is told to wait before retrying while Redis is unreachable.
UNAVAILABLE_RETRY_AFTER = 5

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FieldError(BaseModel):
    field: str | None = Field(description="Dotted path of the offending input, e.g. 'to[0]'.")
    message: str


class Problem(BaseModel):
    """The body of every error answer (RFC 9457)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/validation-error",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "to[0]: 'not-an-address' is not a valid email address",
                    "errors": [{"field": "to[0]", "message": "not a valid email address"}],
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_doc(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI ``responses`` entry for a problem answer."""
    return {
        status: {"model": Problem, "description": description, "content": {PROBLEM_MEDIA_TYPE: {}}}
    }


#: Problems any authenticated endpoint that uses Redis may answer.
COMMON_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **problem_doc(401, "Missing or invalid API key."),
    **problem_doc(403, "The API key lacks the scope this operation needs."),
    **problem_doc(429, "Rate limit exceeded; see Retry-After."),
    **problem_doc(503, "Redis unreachable; see Retry-After."),
}


def problem_type(slug: str) -> str:
    return f"/problems/{slug}"


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return OrjsonResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE
    )


class ApiProblem(Exception):
    """Raised by endpoints and dependencies to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> Response:
        return problem_response(
            self.status,
            self.detail,
            slug=self.slug,
            title=self.title,
            headers=self.headers,
            **self.extra,
        )

    @classmethod
    def invalid(cls, field: str | None, message: str) -> ApiProblem:
        """A 422 naming one field."""
        detail = f"{field}: {message}" if field else message
        return cls(
            422,
            detail,
            slug="validation-error",
            errors=[{"field": field, "message": message}],
        )


def validation_field(loc: Sequence[int | str]) -> str | None:
    """``('body', 'to', 0)`` -> ``'to[0]'``; the location prefix goes unless it is all there is."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or None


def field_errors_from_exception(exc: Exception) -> list[dict[str, str | None]]:
    """The ``errors`` entry for one of notifier's validation errors."""
    if isinstance(exc, MissingVariable):
        return [{"field": f"context.{exc.variable}", "message": str(exc)}]
    if isinstance(exc, TemplateNotFound):
        return [{"field": "template", "message": str(exc)}]
    if isinstance(exc, TemplateError):
        return [{"field": "context", "message": str(exc)}]
    if isinstance(exc, InvalidNotification | InvalidEvent):
        message = str(exc)
        if exc.field and message.startswith(f"{exc.field}: "):
            message = message[len(exc.field) + 2 :]
        return [{"field": exc.field, "message": message}]
    return [{"field": None, "message": str(exc)}]


def unavailable_response(exc: Exception) -> Response:
    log.warning("Redis unavailable: %s", exc)
    return problem_response(
        503,
        "The notification store (Redis) is unreachable; retry shortly.",
        slug="store-unavailable",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


def allowed_methods(request: Request) -> list[str] | None:
    """Every method the OpenAPI document lists for the request's path (None: not in it)."""
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    for template, operations in paths.items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods = {method.upper() for method in operations if method.isalpha()}
            if "GET" in methods:
                methods.add("HEAD")
            return sorted(methods)
    return None


def install_problem_openapi(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers above do.

    Every 4xx/5xx answer is ``application/problem+json`` (FastAPI documents its own 422 as
    ``application/json``), and every operation taking a body documents the 400 an unparseable
    one gets. Applied to the whole document, so routers added later are covered too.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault(
            "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                if "requestBody" in operation:
                    # Starlette's own answer to a body it cannot read at all (e.g. not UTF-8);
                    # JSON that does not parse is a 422 naming the position.
                    responses.setdefault("400", {"description": "The body cannot be read."})
                for status, response in responses.items():
                    if "text/html" in response.get("content", {}):
                        continue  # an HTML page by design (the /u/ unsubscribe pages)
                    if status == "default" or int(status) >= 400:
                        response["content"] = {PROBLEM_MEDIA_TYPE: problem}
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every known error with a problem body."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return exc.response()

    async def on_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": validation_field(error.get("loc", ())),
                "message": str(error.get("msg", "invalid")).removeprefix("Value error, "),
            }
            for error in exc.errors()
        ]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        detail = detail or "invalid request"
        return problem_response(422, detail, slug="validation-error", errors=errors)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        errors = field_errors_from_exception(exc)
        return problem_response(422, str(exc), slug="validation-error", errors=errors)

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return problem_response(404, str(exc), slug="not-found")

    async def on_transition(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidTransition)
        return problem_response(409, str(exc), slug="invalid-transition", current_status=exc.status)

    async def on_idempotency(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IdempotencyConflict)
        return problem_response(
            409, str(exc), slug="idempotency-conflict", original_id=exc.original_id
        )

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        return unavailable_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route matching the path; a path served by several
            # routes (one per method) must list them all (RFC 9110: Allow on every 405).
            methods = allowed_methods(request)
            if methods is not None:
                headers["Allow"] = ", ".join(methods)
        return problem_response(
            exc.status_code,
            str(exc.detail),
            slug="http-error",
            headers=headers,
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "An unexpected error occurred.", slug="internal-error")

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    for invalid in (InvalidNotification, InvalidEvent, TemplateError):
        app.add_exception_handler(invalid, on_invalid)
    app.add_exception_handler(NotificationNotFound, on_not_found)
    app.add_exception_handler(InvalidTransition, on_transition)
    app.add_exception_handler(IdempotencyConflict, on_idempotency)
    for unavailable in (StoreUnavailable, RedisConnectionError, RedisTimeoutError):
        app.add_exception_handler(unavailable, on_unavailable)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)

"""JSON responses serialised with orjson (FastAPI's own ORJSONResponse is deprecated)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

__all__ = ["PROBLEM_MEDIA_TYPE", "OrjsonResponse"]

#: RFC 9457's media type for error bodies.
PROBLEM_MEDIA_TYPE = "application/problem+json"


class OrjsonResponse(JSONResponse):
    """A JSON response rendered by orjson: fast, and it knows datetimes and UUIDs."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)

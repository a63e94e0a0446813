"""Celery's Redis result backend, storing a result with one atomic check-and-set round trip
instead of a GET (and decode) followed by a SET."""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend, SentinelBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

__all__ = [
    "STORE_UNLESS_SUCCESS_SCRIPT",
    "CheckAndSetRedisBackend",
    "CheckAndSetSentinelBackend",
    "backend_url",
]

#: Celery's ``_store_result`` reads the stored result first and leaves it alone when it is a
#: SUCCESS (a lost task re-run must not overwrite it); this does the same check and the write
#: (SET with expiry, PUBLISH for waiting AsyncResults) atomically in Redis.
#: KEYS[1]: the result key. ARGV[1]: the encoded result; ARGV[2]: expiry in seconds, "0" for
#: none. Returns 1 when stored, 0 when a SUCCESS is already there, -1 when the stored value
#: is not JSON (the caller then falls back to Celery's own read-then-write).
STORE_UNLESS_SUCCESS_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if not ok or type(meta) ~= 'table' then return -1 end
  if meta.status == 'SUCCESS' then return 0 end
end
local expires = tonumber(ARGV[2])
if expires > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', expires)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class CheckAndSetMixin:
    """``_store_result`` through :data:`STORE_UNLESS_SUCCESS_SCRIPT` (JSON results only)."""

    _script: Any = None

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        backend: Any = self
        if backend.serializer != "json":
            return super()._store_result(  # type: ignore[misc]
                task_id, result, state, traceback=traceback, request=request, **kwargs
            )
        meta = backend._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = backend.encode(meta)
        if isinstance(value, str) and len(value) > backend._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        expires = backend.failure_expires if state == states.FAILURE else backend.expires
        key = backend.get_key_for_task(task_id)
        stored = backend.ensure(self._store_unless_success, (key, value, int(expires or 0)))
        if stored == -1:
            return super()._store_result(  # type: ignore[misc]
                task_id, result, state, traceback=traceback, request=request, **kwargs
            )
        return result

    def _store_unless_success(self, key: bytes, value: str, expires: int) -> int:
        backend: Any = self
        client = backend.client
        if self._script is None:
            self._script = client.register_script(STORE_UNLESS_SUCCESS_SCRIPT)
        return int(self._script(keys=[key], args=[value, expires], client=client))


class CheckAndSetRedisBackend(CheckAndSetMixin, RedisBackend):  # type: ignore[misc]
    """redis:// and rediss:// results."""


class CheckAndSetSentinelBackend(CheckAndSetMixin, SentinelBackend):  # type: ignore[misc]
    """sentinel:// results (REDIS_SENTINELS)."""


def backend_url(url: str) -> str:
    """Celery's ``result_backend`` for ``url``: the matching class above, ``Class+url``."""
    name = "CheckAndSetSentinelBackend" if url.startswith("sentinel") else "CheckAndSetRedisBackend"
    return f"{__name__}:{name}+{url}"

"""The check-and-set result backend against a real redis-server: a SUCCESS is never
overwritten, other states are, results expire, and waiting AsyncResults still get them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from celery import Celery, states
from celery.result import AsyncResult
from kombu.exceptions import DecodeError

from notifier.worker.result_backend import CheckAndSetRedisBackend, backend_url
from tests.support.redis_server import RedisServer


@pytest.fixture
def celery_app(redis_server: RedisServer) -> Iterator[Celery]:
    app = Celery("result-backend-test", broker=redis_server.url)
    app.conf.update(
        result_backend=backend_url(redis_server.url),
        result_serializer="json",
        result_expires=600,
        result_failure_expires=60,
    )
    yield app
    app.close()


def test_the_url_names_the_check_and_set_backend(celery_app: Celery) -> None:
    assert isinstance(celery_app.backend, CheckAndSetRedisBackend)
    assert (
        backend_url("sentinel://h:26379").split("+", 1)[0].endswith(":CheckAndSetSentinelBackend")
    )


def test_a_success_is_never_overwritten(celery_app: Celery, redis_server: RedisServer) -> None:
    backend = celery_app.backend
    task_id = str(uuid.uuid4())
    backend.store_result(task_id, None, states.STARTED)
    assert backend.get_task_meta(task_id)["status"] == states.STARTED
    backend.mark_as_done(task_id, {"status": "sent"})
    backend.mark_as_failure(task_id, RuntimeError("a lost re-run"))
    backend.store_result(task_id, None, states.RETRY)
    meta = celery_app.backend.get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, {"status": "sent"})
    ttl = redis_server.client().ttl(backend.get_key_for_task(task_id))
    assert 0 < ttl <= 600


def test_a_failure_is_replaced_and_expires_with_result_failure_expires(
    celery_app: Celery, redis_server: RedisServer
) -> None:
    backend = celery_app.backend
    task_id = str(uuid.uuid4())
    backend.mark_as_failure(task_id, RuntimeError("first attempt"))
    key = backend.get_key_for_task(task_id)
    assert 0 < redis_server.client().ttl(key) <= 60
    assert celery_app.backend.get_task_meta(task_id)["status"] == states.FAILURE
    backend.mark_as_done(task_id, 7)
    assert celery_app.backend.get_task_meta(task_id)["result"] == 7


def test_a_stored_value_that_is_not_json_falls_back_to_celerys_own_path(
    celery_app: Celery, redis_server: RedisServer
) -> None:
    backend = celery_app.backend
    task_id = str(uuid.uuid4())
    key = backend.get_key_for_task(task_id)
    redis_server.client().set(key, "not json")
    with pytest.raises(DecodeError):  # as the stock backend: its read cannot decode it either
        backend.mark_as_done(task_id, 1)
    assert redis_server.client().get(key) == "not json"


def test_a_waiting_async_result_gets_the_result(celery_app: Celery) -> None:
    task_id = str(uuid.uuid4())
    result = AsyncResult(task_id, app=celery_app)
    timer = threading.Timer(0.3, celery_app.backend.mark_as_done, (task_id, {"ok": True}))
    timer.start()
    try:
        assert result.get(timeout=10) == {"ok": True}
    finally:
        timer.cancel()

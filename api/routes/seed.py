"""The original design's endpoints (same paths and shapes) and the worker round-trip check.

Nothing here calls Celery's blocking client: task messages are pushed with async Redis and
results are read from Celery's result keys (``celery-task-meta-<id>``) directly.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

import orjson
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from api.deps import ReadCaller, RedisDep, SendCaller, StoreDep, authenticate
from api.problems import COMMON_PROBLEMS, ApiProblem, problem_doc
from api.responses import OrjsonResponse
from api.schemas import RecordId
from notifier.errors import NotificationNotFound
from notifier.messages import ADD_NUMBERS_TASK, DEFAULT_QUEUE, build_task_message
from notifier.storage.keys import Keys
from notifier.storage.redis import map_redis_errors
from notifier.storage.store import NotificationRecord

__all__ = ["RECORD_STATES", "celery_status", "router"]

router = APIRouter(prefix="/api/v1", tags=["tasks"], dependencies=[Depends(authenticate)])

#: Celery's ready states: the task finished one way or the other.
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
#: The Celery state a notification record's status corresponds to.
RECORD_STATES = {
    "queued": "PENDING",
    "scheduled": "PENDING",
    "sending": "STARTED",
    "retrying": "RETRY",
    "sent": "SUCCESS",
    "failed": "FAILURE",
    "cancelled": "REVOKED",
}


async def read_meta(redis: aioredis.Redis, task_id: str) -> dict[str, Any] | None:
    with map_redis_errors():
        raw = await redis.get(Keys.celery_result(task_id))
    if not raw:
        return None
    meta: dict[str, Any] = orjson.loads(raw)
    return meta


def exception_text(result: Any) -> str:
    """What ``str(AsyncResult.info)`` gives for a stored exception."""
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, list | tuple):
            # notifier's delivery errors carry (message, code, recipient); str() is the message.
            notifier_error = str(result.get("exc_module", "")).startswith("notifier.")
            if len(message) == 1 or (message and notifier_error):
                return str(message[0])
            return str(tuple(message))
        return str(message)
    return str(result)


def _answer(task_id: str, status: str, *, result: Any = None, error: str | None = None) -> Response:
    if status == "SUCCESS":
        return OrjsonResponse({"task_id": task_id, "status": status, "result": result})
    if status in READY_STATES:
        return OrjsonResponse({"task_id": task_id, "status": status, "error": error or ""})
    return OrjsonResponse({"task_id": task_id, "status": status})


#: add_numbers takes what a task message (JSON) and the worker's result can carry.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: How long the owner of a ``/calculate`` task is remembered: Celery's result_expires.
TASK_OWNER_TTL = 86400


def celery_status(record: NotificationRecord, meta: dict[str, Any] | None) -> Response:
    """The seed's answer for a notification: its record decides, Celery's result adds detail."""
    status = RECORD_STATES[record.status]
    meta_status = meta.get("status") if meta else None
    if status == "SUCCESS":
        if meta is not None and meta_status == "SUCCESS":
            result = meta.get("result")
        else:  # the record is written before Celery stores the task's result
            result = {
                "id": record.id,
                "status": "sent",
                "message_id": record.message_id,
                "detail": record.smtp_reply or "",
            }
        return _answer(record.id, status, result=result)
    if status == "FAILURE":
        if meta is not None and meta_status == "FAILURE":
            error = exception_text(meta.get("result"))
        else:
            error = record.reason or "failed"
        return _answer(record.id, status, error=error)
    if status == "REVOKED":
        return _answer(record.id, status, error=record.reason or "cancelled")
    return _answer(record.id, status)


@router.get(
    "/task_status/{task_id}",
    summary="Status of a Celery task or a notification (the seed's get_task_status)",
    responses={
        **problem_doc(404, "Not a task or notification of this API key."),
        **COMMON_PROBLEMS,
    },
)
async def get_task_status(
    task_id: RecordId, caller: ReadCaller, redis: RedisDep, store: StoreDep
) -> Response:
    """A notification's status by its id, or a Celery task's result.

    A key without ``admin`` sees only what it created: its notifications, and the tasks it
    dispatched through ``/calculate``. Anything else (another key's, a Celery publisher's,
    the worker health probes') answers 404, so ids of others cannot be probed.
    """
    record = await store.find(task_id)
    if record is not None and not caller.sees(record.owner):
        raise NotificationNotFound(task_id)
    if record is None and not caller.admin:
        with map_redis_errors():
            raw_owner = await redis.get(store.keys.task_owner(task_id))
        owner = raw_owner.decode() if isinstance(raw_owner, bytes) else raw_owner
        if not caller.sees(owner):
            raise ApiProblem(404, f"no task {task_id} created by this API key", slug="not-found")
    meta = await read_meta(redis, task_id)
    if record is not None:
        return celery_status(record, meta)
    if meta is None:
        return _answer(task_id, "PENDING")
    status = str(meta.get("status", "PENDING"))
    if status == "SUCCESS":
        return _answer(task_id, status, result=meta.get("result"))
    return _answer(task_id, status, error=exception_text(meta.get("result")))


class CalculationSent(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "message": "Calculation task sent.",
                    "task_id": "0f8e2c1a-5d4b-4e3f-9a21-7c6b5a4d3e2f",
                }
            ]
        }
    )

    message: str
    task_id: str


@router.get(
    "/calculate",
    response_model=CalculationSent,
    summary="Dispatch add_numbers(x, y) (the seed's calculate)",
    responses=COMMON_PROBLEMS,
)
async def calculate_sum(
    x: Annotated[int, Query(ge=INT64_MIN, le=INT64_MAX, description="A 64-bit integer.")],
    y: Annotated[int, Query(ge=INT64_MIN, le=INT64_MAX, description="A 64-bit integer.")],
    caller: SendCaller,
    redis: RedisDep,
    store: StoreDep,
) -> Response:
    task_id = str(uuid.uuid4())
    message = build_task_message(task=ADD_NUMBERS_TASK, task_id=task_id, args=[x, y])
    with map_redis_errors():
        async with redis.pipeline(transaction=True) as pipe:
            if caller.owner is not None:
                pipe.set(store.keys.task_owner(task_id), caller.owner, ex=TASK_OWNER_TTL)
            pipe.lpush(DEFAULT_QUEUE, message)
            await pipe.execute()
    return OrjsonResponse({"message": "Calculation task sent.", "task_id": task_id})


class WorkerHealth(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ok", "task_id": "0f8e2c1a-...", "result": 5, "seconds": 0.0123}
            ]
        }
    )

    status: str
    task_id: str
    result: int
    seconds: float


@router.get(
    "/health/worker",
    response_model=WorkerHealth,
    summary="Round-trip add_numbers(2, 3) through the broker and a worker",
    responses={**COMMON_PROBLEMS, **problem_doc(503, "No worker answered in time.")},
)
async def worker_health(
    _caller: ReadCaller,
    redis: RedisDep,
    wait: Annotated[
        float, Query(ge=0.1, le=30, description="Seconds to wait for a worker (0.1 to 30).")
    ] = 5.0,
) -> Response:
    task_id = str(uuid.uuid4())
    message = build_task_message(task=ADD_NUMBERS_TASK, task_id=task_id, args=[2, 3])
    started = time.perf_counter()
    with map_redis_errors():
        await redis.lpush(DEFAULT_QUEUE, message)
    deadline = started + wait
    meta = await read_meta(redis, task_id)
    while meta is None or meta.get("status") not in READY_STATES:
        if time.perf_counter() > deadline:
            # Take the probe back so a worker starting later does not run a stale check.
            with map_redis_errors():
                await redis.lrem(DEFAULT_QUEUE, 1, message.decode())
            raise ApiProblem(
                503,
                f"No worker answered add_numbers(2, 3) within {wait:g} s.",
                slug="worker-unavailable",
                headers={"Retry-After": "5"},
            )
        await asyncio.sleep(0.01)
        meta = await read_meta(redis, task_id)
    seconds = time.perf_counter() - started
    with map_redis_errors():
        await redis.delete(Keys.celery_result(task_id))
    if meta.get("status") != "SUCCESS" or meta.get("result") != 5:
        raise ApiProblem(
            503,
            f"The worker answered add_numbers(2, 3) with {meta.get('status')}: "
            f"{exception_text(meta.get('result'))}",
            slug="worker-unhealthy",
        )
    return OrjsonResponse(
        {"status": "ok", "task_id": task_id, "result": 5, "seconds": round(seconds, 4)}
    )

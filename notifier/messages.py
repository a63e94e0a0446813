"""Celery task messages built by hand, so they can be queued inside a Redis transaction.

The API and the scheduler write a notification's record and its task message in one atomic
Redis step (a MULTI or a Lua script); going through ``send_task`` would need a second,
non-atomic round trip. The layout is Celery's task protocol 2 as kombu's Redis transport
stores it: a JSON envelope with a base64 body, pushed onto the queue's list with LPUSH.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["DEFAULT_QUEUE", "build_task_message"]

#: Celery's default queue; the worker consumes it so bare ``send_task`` publishers are served.
DEFAULT_QUEUE = "celery"

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def build_task_message(
    *,
    task: str,
    task_id: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    queue: str = DEFAULT_QUEUE,
    retries: int = 0,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
) -> bytes:
    """The bytes kombu's Redis transport would push for ``send_task(task, args, kwargs)``.

    ``argsrepr``/``kwargsrepr`` are what Flower and the worker log show; pass a redacted
    summary rather than message bodies.
    """
    body = orjson.dumps([list(args), dict(kwargs or {}), _EMBED])
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": retries,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": argsrepr if argsrepr is not None else repr(tuple(args)),
        "kwargsrepr": kwargsrepr if kwargsrepr is not None else "{}",
        "origin": _ORIGIN,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            # kombu keys its unacked bookkeeping by this tag, so every message gets a fresh one.
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(envelope)

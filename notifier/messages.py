"""Task names, the queue, and Celery task messages built for queueing inside a Redis transaction.

The API and the scheduler write a notification's record and its task message in one atomic
Redis step (a MULTI or a Lua script); going through ``send_task`` would need a second,
non-atomic round trip. So the message is built here: Celery's ``app.amqp.as_task_v2`` makes the
protocol-2 headers, body and properties, and this module wraps them the way kombu's Redis
transport stores a publish: a JSON envelope with a base64 body, pushed onto the queue's list.

Imports only celery and kombu, so the publisher client can take its task names from here.
"""

from __future__ import annotations

import base64
import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as json_dumps

__all__ = [
    "ADD_NUMBERS_TASK",
    "DEFAULT_QUEUE",
    "DELIVER_BATCH_TASK",
    "DELIVER_TASK",
    "EVENT_TASK",
    "SEND_EMAIL_TASK",
    "SEND_TASK",
    "WEBHOOKS_QUEUE",
    "WEBHOOK_DELIVER_TASK",
    "build_task_message",
]

#: Celery's default queue; the worker consumes it so bare ``send_task`` publishers are served.
DEFAULT_QUEUE = "celery"

#: The seed's calculator task (``send_task("add_numbers", args=[x, y])``).
ADD_NUMBERS_TASK = "add_numbers"
#: The seed's plain-text email task (``send_task("send_email_task", args=[to, subject, body])``).
SEND_EMAIL_TASK = "send_email_task"
#: A notification request sent straight to the broker; its task id is the notification id.
SEND_TASK = "notifier.send"
#: The internal task that sends a notification whose record already exists.
DELIVER_TASK = "notifier.deliver"
#: The internal task that sends a chunk of such notifications (the batch API's fan-out).
DELIVER_BATCH_TASK = "notifier.deliver_batch"
#: An event envelope to route through the rules (``send_task("notifier.event", args=[event])``).
EVENT_TASK = "notifier.event"
#: Webhook deliveries have their own queue, so a slow receiver never holds up mail.
WEBHOOKS_QUEUE = "webhooks"
#: The internal task that delivers one webhook message to one endpoint.
WEBHOOK_DELIVER_TASK = "notifier.webhooks.deliver"

# What kombu's producer adds to Celery's properties when it publishes (Celery's default
# ``task_default_delivery_mode`` is persistent; the virtual transport's default priority is 0).
_DELIVERY_MODE_PERSISTENT = 2
_DEFAULT_PRIORITY = 0


@functools.cache
def _message_app() -> Celery:
    """A Celery app used only for its message factory: no broker, never connects.

    Not the worker's app, so that building a message loads no settings or task code.
    """
    return Celery("notifier-messages", set_as_current=False)


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
    summary rather than message bodies. The ``origin`` header (``gen<pid>@<host>``) is made by
    Celery at call time, so it names the process that built the message even after a fork.
    """
    message = _message_app().amqp.as_task_v2(
        task_id,
        task,
        args=list(args),
        kwargs=dict(kwargs or {}),
        retries=retries,
        argsrepr=argsrepr,
        kwargsrepr=kwargsrepr,
    )
    content_type, content_encoding, body = serialize(message.body, serializer="json")
    properties: dict[str, Any] = {
        **message.properties,
        "delivery_mode": _DELIVERY_MODE_PERSISTENT,
        "priority": _DEFAULT_PRIORITY,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "body_encoding": "base64",
        # kombu keys its unacked bookkeeping by this tag, so every message gets a fresh one.
        "delivery_tag": str(uuid.uuid4()),
    }
    envelope = {
        "body": base64.b64encode(body.encode(content_encoding)).decode("ascii"),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": message.headers,
        "properties": properties,
    }
    encoded: str = json_dumps(envelope)
    return encoded.encode("utf-8")

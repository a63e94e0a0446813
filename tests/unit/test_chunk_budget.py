"""How long a ``notifier.deliver_batch`` chunk may keep starting sends, and its task message."""

from __future__ import annotations

import base64

import orjson

from notifier.delivery.batch import chunk_start_budget
from notifier.intake import deliver_batch_message
from notifier.messages import DELIVER_BATCH_TASK
from notifier.settings import load_settings


def test_default_budget_leaves_room_for_the_last_send_and_its_record() -> None:
    settings = load_settings(TASK_TIME_LIMIT=120, SEND_TIMEOUT=60)
    # 120 - (60 s SMTP + 25 s recording through a Redis outage + 1 s margin)
    assert chunk_start_budget(settings) == 34


def test_budget_is_zero_when_one_send_can_fill_the_time_limit() -> None:
    settings = load_settings(TASK_TIME_LIMIT=30, SEND_TIMEOUT=10, BROKER_VISIBILITY_TIMEOUT=400)
    assert chunk_start_budget(settings) == 0


def test_chunk_message_names_the_task_and_every_id() -> None:
    envelope = orjson.loads(deliver_batch_message(["a", "b", "c"]))
    assert envelope["headers"]["task"] == DELIVER_BATCH_TASK
    args, kwargs, _ = orjson.loads(base64.b64decode(envelope["body"]))
    assert args == [["a", "b", "c"]]
    assert kwargs == {}

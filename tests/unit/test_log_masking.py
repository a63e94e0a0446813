"""The logging filters and formatters: masking, secrets, notification context, JSON fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from notifier.observability.logs import (
    CELERY_TASK_LOGGERS,
    NotificationContextFilter,
    RedactionFilter,
    build_handler,
    configure_logging,
    log_context,
    mask_address,
    mask_addresses,
    update_log_context,
)
from notifier.settings import load_settings

NID = "12727c8c-40e9-4167-a548-70a38c974bfd"


def make_logger(**settings: object) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.masking.{id(stream)}")
    logger.handlers = [build_handler(load_settings(**settings), stream=stream)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


JsonLog = tuple[logging.Logger, io.StringIO]


@pytest.fixture
def json_log() -> Iterator[JsonLog]:
    logger, stream = make_logger(
        log_format="json", smtp_password="s3cret-pass", api_keys="key-abcdef"
    )
    yield logger, stream
    logger.handlers = []


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_mask_address_keeps_first_letter_and_domain() -> None:
    assert mask_address("anna@example.com") == "a***@example.com"
    assert mask_addresses("to anna.b+x@mail.example.org, 'bob@example.com'") == (
        "to a***@mail.example.org, 'b***@example.com'"
    )


def test_message_ids_and_hosts_without_a_dot_are_not_addresses() -> None:
    text = f"<{NID}@example.com> celery@worker1"
    assert mask_addresses(text) == text


def test_addresses_masked_in_arguments_and_tracebacks(json_log: JsonLog) -> None:
    logger, stream = json_log
    try:
        raise ValueError("550 <victim@example.com> refused")
    except ValueError:
        logger.exception("sending to %s failed", "anna@example.com")
    [record] = lines(stream)
    assert record["message"] == "sending to a***@example.com failed"
    assert "v***@example.com" in str(record["exc_info"])
    assert "victim@example.com" not in stream.getvalue()


def test_secrets_are_replaced(json_log: JsonLog) -> None:
    logger, stream = json_log
    logger.warning("login with s3cret-pass failed; header X-API-Key: key-abcdef")
    assert "s3cret-pass" not in stream.getvalue()
    assert "key-abcdef" not in stream.getvalue()
    assert lines(stream)[0]["message"] == "login with *** failed; header X-API-Key: ***"


def test_log_recipients_true_shows_addresses() -> None:
    logger, stream = make_logger(log_recipients=True)
    logger.info("to %s", "anna@example.com")
    assert "anna@example.com" in stream.getvalue()


def test_context_fields_on_every_line_inside_the_block(json_log: JsonLog) -> None:
    logger, stream = json_log
    with log_context(notification_id=NID):
        logger.info("claimed")
        update_log_context(template="welcome", attempt=2, event_id="evt-1")
        logger.info("sending")
    logger.info("outside")
    inside1, inside2, outside = lines(stream)
    assert inside1["notification_id"] == NID and inside1["template"] is None
    assert (inside2["notification_id"], inside2["template"], inside2["attempt"]) == (
        NID,
        "welcome",
        2,
    )
    assert inside2["event_id"] == "evt-1"
    assert outside["notification_id"] is None and outside["template"] is None


def test_celery_task_lines_get_the_notification_id_and_no_task_arguments(json_log: JsonLog) -> None:
    logger, stream = json_log
    # What celery.worker.strategy logs when a task arrives, with its arguments as extra.
    logger.info(
        "Task %(name)s[%(id)s] received",
        {"name": "notifier.send", "id": NID},
        extra={"data": {"kwargs": "{'to': 'anna@example.com', 'text': 'secret body'}"}},
    )
    [record] = lines(stream)
    assert record["notification_id"] == NID
    assert "data" not in record
    assert "secret body" not in stream.getvalue()


def test_other_tasks_are_not_notifications(json_log: JsonLog) -> None:
    logger, stream = json_log
    logger.info("Task %(name)s[%(id)s] received", {"name": "add_numbers", "id": "x"})
    assert lines(stream)[0]["notification_id"] is None


def test_text_format_appends_the_context() -> None:
    logger, stream = make_logger()
    with log_context(notification_id=NID, template="welcome", attempt=1):
        logger.info("sent to %s", "anna@example.com")
    line = stream.getvalue().strip()
    assert line.endswith(
        f"sent to a***@example.com [notification={NID} template=welcome attempt=1]"
    )


def test_filters_are_idempotent_across_handlers() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("anna@example.com",), None)
    redact = RedactionFilter()
    assert redact.filter(record) and NotificationContextFilter().filter(record)
    assert redact.filter(record)
    assert record.getMessage() == "to a***@example.com"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put back the root logger and Celery's task loggers after configure_logging."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in CELERY_TASK_LOGGERS}
    yield
    root.handlers, root.level = saved[0], saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_celery_task_lines_are_off_by_default_and_warnings_stay() -> None:
    configure_logging(load_settings(), stream=io.StringIO(), level="INFO")
    for name in CELERY_TASK_LOGGERS:
        logger = logging.getLogger(name)
        # Celery checks isEnabledFor(INFO) when it builds its tracer and strategy.
        assert not logger.isEnabledFor(logging.INFO)
        assert logger.isEnabledFor(logging.WARNING)
    # Our own per-notification lines are INFO and still logged.
    assert logging.getLogger("notifier.delivery.deliver").isEnabledFor(logging.INFO)


@pytest.mark.usefixtures("root_logging")
def test_log_celery_tasks_brings_celery_task_lines_back() -> None:
    configure_logging(load_settings(log_celery_tasks=True), stream=io.StringIO(), level="INFO")
    for name in CELERY_TASK_LOGGERS:
        assert logging.getLogger(name).isEnabledFor(logging.INFO)

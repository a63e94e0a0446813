"""Logging for the worker, the API and the CLI: readable text or one JSON object per line.

Two filters sit on the handler, so no call site can forget them:

- ``NotificationContextFilter`` adds ``notification_id``, ``template``, ``attempt`` and
  ``event_id`` from context variables that delivery sets (``log_context``);
- ``RedactionFilter`` masks recipient addresses (``a***@example.com``, unless
  ``LOG_RECIPIENTS=true``) and known secrets (SMTP password, API keys) in the message and in
  the exception text.

Message bodies are never passed to a logger in the first place.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from pythonjsonlogger.json import JsonFormatter

from notifier.messages import DELIVER_TASK, SEND_EMAIL_TASK, SEND_TASK
from notifier.settings import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "NotificationContextFilter",
    "RedactionFilter",
    "configure_logging",
    "current_log_context",
    "log_context",
    "mask_address",
    "mask_addresses",
    "update_log_context",
]

#: The per-notification fields every record carries (None when not about a notification).
CONTEXT_FIELDS = ("notification_id", "template", "attempt", "event_id")

#: Celery's loggers of the per-task INFO lines: "Task ... received" (the consumer's
#: strategy, main process) and "Task ... succeeded in ..." (the tracer, pool processes).
CELERY_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

#: Celery tasks whose task id is the notification id.
NOTIFICATION_TASKS = frozenset({SEND_TASK, DELIVER_TASK, SEND_EMAIL_TASK})

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "notifier_log_context", default=_EMPTY
)

# local@domain, where the domain has at least one dot or is an IP literal. Deliberately a little
# wider than RFC 5322 requires: masking something that was not an address costs nothing.
# ``\w`` is Unicode-aware: internationalized local parts and domains (иван@пример.рф) match.
_ADDRESS = re.compile(r"(?P<local>[\w!#$%&'*+/=?^`{|}~.-]+)@(?P<domain>[\w-]+(?:\.[\w-]+)+)")
#: Celery's debug line for every task it hands to the pool prints the task's arguments:
#: message bodies and addresses. Only the task is kept.
_POOL_APPLY = "TaskPool: Apply %s (args:%s kwargs:%s)"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def mask_address(address: str) -> str:
    """``anna@example.com`` -> ``a***@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_addresses(text: str) -> str:
    """Every email address in ``text`` masked (Message-IDs, ``<uuid@host>``, are kept)."""
    # Most lines (Celery's "received"/"succeeded") hold no "@": the regex would still try a
    # match at every word character, which made this a few per cent of a worker's CPU.
    if "@" not in text:
        return text
    return _ADDRESS.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    local = match.group("local")
    if _UUID.fullmatch(local):
        return match.group(0)
    # Quotes and brackets before the address (``'to': 'anna@...'``) are kept as they are.
    start = next((i for i, c in enumerate(local) if c.isalnum()), len(local))
    return f"{local[: start + 1]}***@{match.group('domain')}"


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (see CONTEXT_FIELDS) to every record logged inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> Mapping[str, Any]:
    return _context.get()


class NotificationContextFilter(logging.Filter):
    """Adds the current notification's id, template, attempt and event id to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, context.get(name))
        if record.notification_id is None:  # type: ignore[attr-defined]
            # Celery's own lines ("Task notifier.send[<id>] received", "... succeeded") are
            # logged outside our code; their task id is the notification id.
            args = record.args
            if isinstance(args, Mapping) and args.get("name") in NOTIFICATION_TASKS:
                record.notification_id = args.get("id")
        return True


class RedactionFilter(logging.Filter):
    """Masks addresses (unless ``show_recipients``) and secrets in messages and tracebacks."""

    def __init__(self, *, show_recipients: bool = False, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.show_recipients = show_recipients
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text if self.show_recipients else mask_addresses(text)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_notifier_redacted", False):
            return True
        if record.msg == _POOL_APPLY and isinstance(record.args, tuple) and record.args:
            record.msg, record.args = "TaskPool: Apply %s (arguments not logged)", record.args[:1]
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what we can show safely
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            # Formatted here so the traceback text (SMTP replies quote addresses) is masked
            # too; formatters print exc_text when exc_info is gone.
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, self.redact(text)
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._notifier_redacted = True
        return True


class TextFormatter(logging.Formatter):
    """Readable lines, with ``[notification=... template=... attempt=...]`` when present."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        parts = [
            f"{name.removesuffix('_id')}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        if not parts:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} [{' '.join(parts)}]{newline}{rest}"


class _JsonFormatter(JsonFormatter):
    """Only the fields we name: Celery attaches a task's arguments (bodies, addresses) to some
    records as ``extra``, and python-json-logger would print every extra attribute."""

    FIELDS = frozenset(
        {"time", "level", "logger", "pid", "message", "exc_info", "stack_info", *CONTEXT_FIELDS}
    )

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in [key for key in log_data if key not in self.FIELDS]:
            del log_data[key]


def json_formatter() -> logging.Formatter:
    return _JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s "
        + " ".join(f"%({name})s" for name in CONTEXT_FIELDS),
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        json_ensure_ascii=False,
    )


def build_handler(
    settings: Settings, *, stream: Any = None, logfile: str | None = None
) -> logging.Handler:
    """A handler with our formatter and both filters."""
    handler: logging.Handler = (
        logging.FileHandler(logfile, encoding="utf-8")
        if logfile
        else logging.StreamHandler(stream or sys.stderr)
    )
    handler.setFormatter(
        json_formatter() if settings.log_format == "json" else TextFormatter(_TEXT_FORMAT)
    )
    handler.addFilter(NotificationContextFilter())
    handler.addFilter(
        RedactionFilter(show_recipients=settings.log_recipients, secrets=_secrets(settings))
    )
    return handler


def _secrets(settings: Settings) -> list[str]:
    secrets = settings.api_key_values()
    if settings.smtp_password is not None:
        secrets.append(settings.smtp_password.get_secret_value())
    redis_password = urlsplit(settings.redis_url).password
    if redis_password:
        secrets += [redis_password, unquote(redis_password)]
    if settings.redis_sentinel_password is not None:
        secrets.append(settings.redis_sentinel_password.get_secret_value())
    return secrets


def configure_logging(
    settings: Settings,
    *,
    level: int | str | None = None,
    logfile: str | None = None,
    stream: Any = None,
) -> logging.Handler:
    """Replace the root logger's handlers with ours; returns the handler.

    Called by the worker (Celery's ``setup_logging`` signal), the API and the CLI.
    """
    handler = build_handler(settings, stream=stream, logfile=logfile)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or settings.log_level)
    # Libraries that bring their own handlers would bypass the filters: route them to root.
    for name in ("celery", "celery.task", "celery.redirected", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # Celery decides once, when it builds a task's tracer and the consumer's strategy, whether
    # these loggers log at INFO: set before either is built (the worker's setup_logging).
    task_lines = logging.NOTSET if settings.log_celery_tasks else logging.WARNING
    for name in CELERY_TASK_LOGGERS:
        logging.getLogger(name).setLevel(task_lines)
    return handler


def update_log_context(**fields: Any) -> None:
    """Add ``fields`` to the current context (inside a ``log_context`` block, which undoes it)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def handler_from_settings() -> logging.Handler:
    """Our handler for the process's settings; a ``logging.config`` factory (uvicorn)."""
    from notifier.settings import get_settings

    return build_handler(get_settings())


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``log_config``: every logger through our handler, in each worker process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"default": {"()": "notifier.observability.logs.handler_from_settings"}},
        "root": {"handlers": ["default"], "level": settings.log_level},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }

"""Logging and metrics settings: log level and format, task events, the worker's metrics port."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from notifier.settings.base import SettingsBase

__all__ = ["ObservabilitySettings"]


class ObservabilitySettings(SettingsBase):
    """Logs, Celery task events and the worker's Prometheus endpoint."""

    # Logging.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_recipients: bool = False
    #: Celery's own per-task INFO lines ("Task ... received", "Task ... succeeded in ...").
    #: Off: notifier logs one line per notification outcome instead (sent, retrying, failed),
    #: and the two lines cost the worker ~7 % of its CPU per message (docs/performance.md).
    #: Celery's warnings and errors (a task that raised, a lost worker) are logged either way.
    log_celery_tasks: bool = False

    # Metrics: a worker serves its processes' Prometheus metrics here (0 or empty: off).
    #: Celery task events, which Flower needs; they cost the worker's main process CPU per task.
    worker_events: bool = False
    worker_metrics_port: int = Field(0, ge=0, lt=65536)
    worker_metrics_host: str = "0.0.0.0"

    @field_validator("worker_metrics_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: object) -> object:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

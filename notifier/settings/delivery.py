"""Delivery settings: templates and events, retries, request limits, records and scheduling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from notifier.settings.base import SettingsBase

__all__ = ["DeliverySettings"]


class DeliverySettings(SettingsBase):
    """What a notification may hold, how it is retried, and how long its record is kept."""

    # Templates and events.
    templates_dir: Path = Path("templates")
    default_locale: str = "en"
    events_file: Path | None = None

    # Retries.
    retry_backoff_base: float = Field(2.0, gt=0)
    retry_backoff_max: float = Field(300.0, gt=0)
    retry_max_attempts: int = Field(5, ge=1)
    task_time_limit: int = Field(120, gt=0)

    # Limits.
    max_recipients: int = Field(50, ge=1)
    max_attachments: int = Field(10, ge=0)
    max_attachments_bytes: int = Field(10 * 1024 * 1024, ge=0)
    #: Content types attachments may have, e.g. "application/pdf,image/*" (empty: any).
    attachment_content_types: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_batch_size: int = Field(500, ge=1)
    #: How deeply a template context may nest, and its size as JSON.
    max_context_depth: int = Field(32, ge=1, le=200)
    max_context_bytes: int = Field(1024 * 1024, ge=1)
    batch_chunk_size: int = Field(50, ge=1, le=1000)
    #: SMTP connections each worker process may hold to the relay (its pool's size): against
    #: a relay 5 ms away, 16 kept sends waiting for a connection (relay row 428-458 msg/s
    #: against 546-551 with 32; docs/performance.md).
    smtp_connections_per_process: int = Field(32, ge=1, le=256)
    #: Tasks (sends) each worker process runs at once; the broker prefetch is this times -c.
    #: Twice the connections: while one task claims, renders or records, another uses the
    #: connection (relay row 511-521 msg/s with 32 in flight, 548-550 with 64).
    sends_in_flight_per_process: int = Field(64, ge=1, le=1000)

    # Records and scheduling.
    record_retention_days: float = Field(7.0, gt=0)
    scheduler_interval: float = Field(1.0, gt=0)
    #: Seconds without progress after which a pending notification's message is presumed lost.
    recovery_after: float = Field(900.0, gt=0)

    @field_validator("attachment_content_types", mode="before")
    @classmethod
    def _split_content_types(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip().lower() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                major, slash, minor = str(item).partition("/")
                if not (major and slash and minor) or "*" in major:
                    raise ValueError(f"entries must be 'type/subtype' or 'type/*', got {item!r}")
        return value

    @property
    def effective_events_file(self) -> Path:
        return (
            self.events_file if self.events_file is not None else self.templates_dir / "events.toml"
        )

    @property
    def record_retention_seconds(self) -> int:
        return int(self.record_retention_days * 86400)

"""Outbound webhook settings: timeouts, the retry schedule, disabling, secrets and concurrency."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from notifier.settings.base import SettingsBase, split_commas

__all__ = ["WebhookSettings"]


class WebhookSettings(SettingsBase):
    """Outbound webhooks (notifier.webhooks)."""

    #: Seconds one webhook request may take (connect, send, answer) before it counts as failed.
    webhook_timeout: float = Field(10.0, gt=0)
    #: Delays in seconds before each retry of a webhook (the first try is immediate).
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    #: Seconds of continuous failure after which an endpoint is disabled (5 days).
    webhook_disable_after: float = Field(5 * 86400.0, gt=0)
    #: Allow endpoint URLs resolving to loopback/private/link-local addresses (unset: not in
    #: production).
    webhook_allow_private: bool | None = None
    #: How much of a receiver's response body is read and kept in the delivery log.
    webhook_response_max_bytes: int = Field(4096, ge=0, le=1024 * 1024)
    #: Seconds a rotated-out secret keeps signing, beside the new one.
    webhook_secret_grace: float = Field(86400.0, ge=0)
    #: Webhook requests each worker process runs at once (the rest wait on the schedule).
    webhook_concurrency_per_process: int = Field(4, ge=1, le=256)
    #: Delivery attempts kept per endpoint for GET .../attempts.
    webhook_log_size: int = Field(1000, ge=1)

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_retry_schedule(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_retry_schedule(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("WEBHOOK_RETRY_SCHEDULE delays must not be negative")
        return value

    @property
    def webhook_private_allowed(self) -> bool:
        """WEBHOOK_ALLOW_PRIVATE, defaulting to true in development and false in production."""
        if self.webhook_allow_private is None:
            return not self.is_production
        return self.webhook_allow_private

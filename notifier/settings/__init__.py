"""Settings: one pydantic-settings class, composed of one mixin per concern, read from the
environment and an optional ``.env``."""

from __future__ import annotations

import functools
from typing import Self

from pydantic import ValidationError, model_validator

from notifier.errors import ConfigurationError
from notifier.settings.api import API_SCOPES, ApiKeySpec, ApiSettings, RateLimit, parse_api_key
from notifier.settings.base import is_loopback
from notifier.settings.bounces import BounceSettings
from notifier.settings.deliverability import DEFAULT_DKIM_HEADERS, DeliverabilitySettings
from notifier.settings.delivery import DeliverySettings
from notifier.settings.observability import ObservabilitySettings
from notifier.settings.redis import RedisSettings
from notifier.settings.smtp import DEFAULT_SMTP_PORTS, DEV_INBOX_SMTP_PORT, SmtpSettings
from notifier.settings.webhooks import WebhookSettings

__all__ = [
    "API_SCOPES",
    "DEFAULT_DKIM_HEADERS",
    "DEFAULT_SMTP_PORTS",
    "DEV_INBOX_SMTP_PORT",
    "ApiKeySpec",
    "RateLimit",
    "Settings",
    "get_settings",
    "is_loopback",
    "load_settings",
    "parse_api_key",
]


# pydantic collects fields base-first along the MRO, so the mixins are listed last concern
# first: the fields then keep the order of the README's configuration table.
class Settings(
    DeliverabilitySettings,
    WebhookSettings,
    BounceSettings,
    ObservabilitySettings,
    ApiSettings,
    DeliverySettings,
    SmtpSettings,
    RedisSettings,
):
    """Every knob of the service; the README's configuration table lists them all."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        # One validator running every concern's check in a fixed order, so that of several
        # problems the same one is reported first whatever the mixins' order.
        self._check_production()
        self._check_redis()
        self._check_timing()
        self._check_deliverability()
        self._check_webhook_timeout()
        self._check_bounces()
        return self

    # Checks that tie settings of different concerns together.

    def _check_timing(self) -> None:
        # A message the broker hands out stays invisible to other workers for this long; a
        # task still waiting or running past it is handed out again and may be sent twice.
        longest = self.retry_backoff_max + self.task_time_limit
        if self.broker_visibility_timeout <= longest:
            raise ValueError(
                f"BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout}s) must be longer "
                f"than RETRY_BACKOFF_MAX ({self.retry_backoff_max:g}s) + TASK_TIME_LIMIT "
                f"({self.task_time_limit}s) = {longest:g}s"
            )
        if self.send_timeout >= self.task_time_limit:
            raise ValueError(
                f"SEND_TIMEOUT ({self.send_timeout:g}s) must be shorter than "
                f"TASK_TIME_LIMIT ({self.task_time_limit}s)"
            )
        if self.retry_backoff_base > self.retry_backoff_max:
            raise ValueError(
                f"RETRY_BACKOFF_BASE ({self.retry_backoff_base:g}s) must not exceed "
                f"RETRY_BACKOFF_MAX ({self.retry_backoff_max:g}s)"
            )

    def _check_webhook_timeout(self) -> None:
        # The request runs inside the delivery task; past TASK_TIME_LIMIT the task is cancelled.
        if self.webhook_timeout < self.task_time_limit:
            return
        if "webhook_timeout" not in self.model_fields_set:
            # Only the default is too long (a short TASK_TIME_LIMIT): fit it, do not refuse.
            self.webhook_timeout = self.task_time_limit / 2
        else:
            raise ValueError(
                f"WEBHOOK_TIMEOUT ({self.webhook_timeout:g}s) must be shorter than "
                f"TASK_TIME_LIMIT ({self.task_time_limit}s)"
            )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises ConfigurationError naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from exc


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (after any fork)."""
    return load_settings()

"""The settings base every concern's mixin builds on: the ``.env`` source and NOTIFIER_ENV."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["HOSTNAME", "SettingsBase", "is_loopback", "split_commas"]

#: A DNS host name with at least two labels (DKIM_DOMAIN, BOUNCE_DOMAIN).
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (clear-text SMTP there never crosses a network)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_commas(value: object) -> object:
    """A comma-separated environment value as a list of its non-empty, stripped items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class SettingsBase(BaseSettings):
    """Where settings come from, and the one field every concern's checks read."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    notifier_env: Literal["development", "production"] = "development"

    @property
    def is_production(self) -> bool:
        return self.notifier_env == "production"

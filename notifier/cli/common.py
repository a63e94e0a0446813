"""What the CLI's commands share: one-line failures, settings or exit, address arguments, and
running an operation against the suppression list."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from notifier.compose.addresses import normalize_address
from notifier.errors import ConfigurationError, NotifierError, describe_error
from notifier.settings import Settings, load_settings
from notifier.storage.connection import connect_async
from notifier.storage.suppressions import SuppressionStore

__all__ = ["address_param", "fail", "settings_or_exit", "with_suppression_store"]

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigurationError as exc:
        fail(str(exc), 2)


def address_param(value: str) -> str:
    """An email address argument, normalised; a bad one is click's usage error."""
    try:
        return normalize_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def with_suppression_store(
    settings: Settings, operation: Callable[[SuppressionStore], Awaitable[T]]
) -> T:
    """Run ``operation`` against the suppression list; any NotifierError is one line, exit 1."""

    async def run() -> T:
        redis = connect_async(settings)
        try:
            return await operation(SuppressionStore(redis, prefix=settings.redis_prefix))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except NotifierError as exc:
        fail(describe_error(exc))

"""What the operator CLI does: plain functions over the store, the renderer and the broker.

``notifier.cli`` parses arguments, calls these (``asyncio.run`` for the async ones) and prints.
Every failure is a NotifierError the CLI turns into one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import webbrowser
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from notifier.compose.rendering import RenderedEmail, TemplateRenderer
from notifier.compose.requests import parse_request, validate_notification
from notifier.errors import InvalidNotification, InvalidTransition, describe_error
from notifier.intake import accept_notification, requeue_notification
from notifier.observability.logs import mask_address, mask_addresses
from notifier.settings import Settings
from notifier.startup import load_renderer
from notifier.storage.connection import connect_async
from notifier.storage.sink import message_sink, publisher_config
from notifier.storage.store import NotificationRecord, NotificationStore

__all__ = [
    "FailedNotification",
    "StatusReport",
    "describe_error",
    "list_failed",
    "open_html_preview",
    "parse_context",
    "ping_workers",
    "read_status",
    "render_preview",
    "retry_all_failed",
    "retry_notification",
    "send_notification",
]


@dataclass(frozen=True, slots=True)
class StatusReport:
    queue_depth: int
    scheduled: int
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class FailedNotification:
    """A dead letter as the CLI shows it: recipients masked unless asked for."""

    id: str
    template: str
    to: str
    reason: str
    failed_at: float

    @classmethod
    def from_record(
        cls, record: NotificationRecord, *, show_recipients: bool = False
    ) -> FailedNotification:
        to = record.to if show_recipients else [mask_address(a) for a in record.to]
        reason = record.reason or "-"
        return cls(
            id=record.id,
            template=record.template or "raw",
            to=", ".join(to) or "-",
            reason=reason if show_recipients else mask_addresses(reason),
            failed_at=record.updated_at,
        )


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[NotificationStore]:
    redis = connect_async(settings, socket_connect_timeout=3)
    sink = message_sink(settings)  # requeues are published to RabbitMQ (BROKER_URL)
    try:
        yield NotificationStore(
            redis,
            prefix=settings.redis_prefix,
            retention_seconds=settings.record_retention_seconds,
            sink=sink,
        )
    finally:
        await redis.aclose()
        if sink is not None:
            sink.close()


async def read_status(settings: Settings) -> StatusReport:
    """Queue depth, schedule size and record counts by status (StoreUnavailable when down)."""
    async with open_store(settings) as store:
        return StatusReport(
            queue_depth=await store.queue_length(),
            scheduled=await store.scheduled_count(),
            counts=await store.counts(),
        )


def ping_workers(settings: Settings, *, timeout: float = 1.0) -> list[str]:
    """Names of the workers that answered a broadcast ping within ``timeout`` seconds."""
    from celery import Celery

    from notifier.storage.connection import celery_client_config

    client = Celery("notifier-cli")
    client.conf.update(
        accept_content=["json"],
        broker_connection_retry=False,
        **publisher_config(settings, celery_client_config(settings)),
    )
    try:
        replies = client.control.ping(timeout=timeout) or []
    finally:
        client.close()
    return sorted(name for reply in replies for name in reply)


async def list_failed(
    settings: Settings, *, limit: int = 20, show_recipients: bool = False
) -> list[FailedNotification]:
    """The newest dead letters."""
    async with open_store(settings) as store:
        page = await store.list(status="failed", limit=limit)
    return [
        FailedNotification.from_record(record, show_recipients=show_recipients)
        for record in page.records
    ]


async def retry_notification(settings: Settings, notification_id: str) -> None:
    """Queue failed notification ``notification_id`` again (NotificationNotFound, or
    InvalidTransition when it has not failed)."""
    async with open_store(settings) as store:
        try:
            await requeue_notification(store, notification_id)
        except InvalidTransition as exc:
            raise InvalidTransition(
                f"notification {notification_id} is {exc.status}; only failed ones can be retried",
                status=exc.status,
            ) from exc


async def retry_all_failed(settings: Settings) -> list[str]:
    """Queue every dead letter again; returns their ids."""
    requeued: list[str] = []
    async with open_store(settings) as store:
        while True:
            # Each requeue removes the record from the failed index, so always read page one.
            page = await store.list(status="failed", limit=100)
            fresh = [r.id for r in page.records if r.id not in requeued]
            if not fresh:
                return requeued
            for notification_id in fresh:
                try:
                    await requeue_notification(store, notification_id)
                except InvalidTransition:
                    continue  # requeued by someone else meanwhile
                requeued.append(notification_id)


def parse_context(text: str) -> dict[str, Any]:
    """``--context`` JSON; must be an object."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidNotification(f"not valid JSON ({exc})", field="--context") from None
    if not isinstance(value, dict):
        raise InvalidNotification(
            f"must be a JSON object, got {type(value).__name__}", field="--context"
        )
    return value


def render_preview(
    settings: Settings,
    template: str,
    context: Mapping[str, Any],
    *,
    locale: str | None = None,
    renderer: TemplateRenderer | None = None,
) -> tuple[str, RenderedEmail]:
    """Render ``template`` as a worker would; returns the locale used and the email."""
    renderer = renderer or load_renderer(settings)
    renderer.describe(template)  # TemplateNotFound names it
    resolved = renderer.resolve_locale(template, locale)
    return resolved, renderer.render(template, context, locale=locale)


def open_html_preview(rendered: RenderedEmail, *, browser: bool = True) -> Path:
    """Write the HTML body (or the text, escaped) to a file; open it when a desktop is there."""
    import html

    body = rendered.html or f"<pre>{html.escape(rendered.text)}</pre>"
    handle, name = tempfile.mkstemp(prefix="notifier-preview-", suffix=".html")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(body)
    path = Path(name)
    # Without a display webbrowser may pick a console browser that takes over the terminal.
    has_desktop = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if browser and (has_desktop or sys.platform in ("darwin", "win32")):
        webbrowser.open(path.as_uri())
    return path


async def send_notification(
    settings: Settings,
    *,
    to: list[str],
    template: str,
    context: Mapping[str, Any],
    locale: str | None = None,
) -> str:
    """Validate locally (as the API does), then accept: returns the notification id."""
    request = parse_request(
        {"to": to, "template": template, "context": dict(context), "locale": locale}
    )
    notification = validate_notification(
        request, settings=settings, renderer=load_renderer(settings)
    )
    async with open_store(settings) as store:
        result = await accept_notification(store, notification, source="cli")
    return result.id

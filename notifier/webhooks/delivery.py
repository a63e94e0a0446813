"""Delivering one webhook message to one endpoint: sign, POST, record, schedule the retry.

At least once: the attempt is recorded after the receiver answered. A worker that dies between
a 2xx and that record leaves the task unacknowledged; the broker hands it out again after
BROKER_VISIBILITY_TIMEOUT and the message is sent a second time with the same ``webhook-id``,
which receivers use to drop the repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import httpx

from notifier.errors import UnsafeWebhookUrl, WebhookEndpointNotFound
from notifier.settings import Settings
from notifier.webhooks.emit import emit
from notifier.webhooks.events import endpoint_disabled_event
from notifier.webhooks.metrics import (
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS_DISABLED,
    WEBHOOK_LATENCY,
)
from notifier.webhooks.models import DeliveryState, Endpoint
from notifier.webhooks.signing import signed_headers
from notifier.webhooks.store import WebhookStore
from notifier.webhooks.urls import check_url

__all__ = ["HttpAnswer", "deliver_webhook", "new_http_client", "post_webhook"]

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "failed", "gone", "skipped"]
#: The delivery's state after an attempt with each final outcome.
_STATES: dict[str, Literal["pending", "delivered", "failed"]] = {
    "delivered": "delivered",
    "retry": "pending",
    "failed": "failed",
}


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What one request got: the status code (None when there was no answer) and the start of
    the body, or the error."""

    status: int | None
    body: str
    duration: float
    error: str = ""
    truncated: bool = False


def new_http_client() -> httpx.AsyncClient:
    """The client a worker process reuses: no redirects, no environment proxies or netrc."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": "notifier-webhooks"},
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


async def post_webhook(
    client: httpx.AsyncClient,
    url: str,
    *,
    body: str,
    headers: dict[str, str],
    time_limit: float,
    max_bytes: int,
) -> HttpAnswer:
    """POST ``body``; read at most ``max_bytes`` of the answer; the whole request within
    ``time_limit`` seconds (httpx's own timeouts are per read: a trickling receiver could last)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(time_limit):
            async with client.stream(
                "POST", url, content=body.encode(), headers=headers, timeout=time_limit
            ) as response:
                chunks: list[bytes] = []
                size = 0
                truncated = False
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > max_bytes:
                        truncated = True
                        break
                data = b"".join(chunks)[:max_bytes]
                return HttpAnswer(
                    response.status_code,
                    data.decode("utf-8", "replace"),
                    time.monotonic() - started,
                    truncated=truncated,
                )
    except TimeoutError:
        return HttpAnswer(
            None, "", time.monotonic() - started, error=f"timed out after {time_limit:g}s"
        )
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        return HttpAnswer(
            None, "", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}"
        )


async def deliver_webhook(
    *,
    store: WebhookStore,
    client: httpx.AsyncClient,
    settings: Settings,
    endpoint_id: str,
    message_id: str,
) -> Outcome:
    """Try to deliver one message to one endpoint once, and record what happened."""
    try:
        endpoint = await store.get_endpoint(endpoint_id)
    except WebhookEndpointNotFound:
        await store.unschedule(endpoint_id, message_id)
        return "skipped"  # deleted since: its state went with it
    state = await store.delivery_state(endpoint_id, message_id)
    if state is None or state.status != "pending":
        await store.unschedule(endpoint_id, message_id)
        return "skipped"  # delivered or given up already (a task handed out twice)
    now = time.time()
    if endpoint.disabled:
        await store.give_up(endpoint_id, message_id, attempts=state.attempts, now=now)
        return "skipped"
    number = state.attempts + 1
    message = await store.get_message(message_id)
    if message is None:
        answer = HttpAnswer(None, "", 0.0, error="the message expired before it was delivered")
    else:
        answer = await _attempt(endpoint, settings, client, message_id, str(message["body"]))

    status = answer.status
    outcome: Outcome
    if status is not None and 200 <= status < 300:
        outcome = "delivered"
    elif status == 410:
        outcome = "gone"
    elif message is not None and number <= len(settings.webhook_retry_schedule):
        outcome = "retry"
    else:
        outcome = "failed"
    due = now + (settings.webhook_retry_schedule[number - 1] if outcome == "retry" else 0.0)
    attempt = {
        "message_id": message_id,
        "event_type": message["type"] if message else None,
        "attempt": number,
        "at": now,
        "status": {"delivered": "succeeded", "retry": "failed", "failed": "failed"}.get(
            outcome, "failed"
        ),
        "response_code": status,
        "duration_ms": round(answer.duration * 1000, 1),
        "response": answer.body,
        "response_truncated": answer.truncated,
        "error": answer.error,
        "next_attempt_at": due if outcome == "retry" else None,
    }
    final: Literal["delivered", "retry", "failed"] = (
        "delivered" if outcome == "delivered" else "retry" if outcome == "retry" else "failed"
    )
    try:
        failing_since = await store.record_attempt(
            endpoint_id,
            message_id,
            attempt=attempt,
            state=DeliveryState(_STATES[final], number),
            outcome=final,
            due=due,
            log_size=settings.webhook_log_size,
            now=now,
        )
    except WebhookEndpointNotFound:
        return "skipped"
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
    if message is not None:
        WEBHOOK_LATENCY.labels(outcome=outcome).observe(answer.duration)
    if outcome == "gone":
        await _disable(store, endpoint, reason="the receiver answered 410 Gone", label="gone")
    elif failing_since is not None and now - failing_since >= settings.webhook_disable_after:
        await _disable(
            store,
            endpoint,
            reason=f"failing since {datetime.fromtimestamp(failing_since, UTC).isoformat()}",
            label="failing",
        )
    if outcome != "delivered":
        log.info(
            "webhook %s to endpoint %s attempt %d: %s",
            message_id,
            endpoint_id,
            number,
            answer.error or f"HTTP {status}",
        )
    return outcome


async def _attempt(
    endpoint: Endpoint,
    settings: Settings,
    client: httpx.AsyncClient,
    message_id: str,
    body: str,
) -> HttpAnswer:
    try:
        # Again at each delivery: the name may resolve elsewhere since it was saved.
        await check_url(
            endpoint.url,
            production=settings.is_production,
            allow_private=settings.webhook_private_allowed,
        )
    except UnsafeWebhookUrl as exc:
        return HttpAnswer(None, "", 0.0, error=f"refused: {exc}")
    headers = signed_headers(
        message_id=message_id, body=body, secrets_in_use=endpoint.secrets_in_use(time.time())
    )
    return await post_webhook(
        client,
        endpoint.url,
        body=body,
        headers=headers,
        time_limit=settings.webhook_timeout,
        max_bytes=settings.webhook_response_max_bytes,
    )


async def _disable(store: WebhookStore, endpoint: Endpoint, *, reason: str, label: str) -> None:
    """Disable the endpoint, count it, and tell its owner's other endpoints."""
    if not await store.disable_endpoint(endpoint.id, reason=reason):
        return
    WEBHOOK_ENDPOINTS_DISABLED.labels(reason=label).inc()
    log.warning("webhook endpoint %s (%s) disabled: %s", endpoint.id, endpoint.url, reason)
    event = endpoint_disabled_event(
        endpoint_id=endpoint.id,
        url=endpoint.url,
        reason=reason,
        owner=endpoint.owner,
        at=time.time(),
    )
    await emit(store.redis, store.keys, event)

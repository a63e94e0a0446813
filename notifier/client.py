"""The publisher client: what another service imports to publish events and send emails.

Needs only ``celery`` (with its Redis transport) and the standard library: no templates,
no pydantic, no worker code, so a service can ``pip install notifier`` or copy this one file.

    >>> with NotifierClient("redis://localhost:6379/0") as client:    # doctest: +SKIP
    ...     task_id = client.publish("user.registered", {"email": "ann@example.com",
    ...                                                  "name": "Ann"}, id="user-42")
    ...     client.status(task_id)["result"]["notification_ids"]

Ids, in short: ``publish`` returns the id of the ``notifier.event`` task (``status`` of it
gives the ids of the notifications the event produced); ``send`` returns the notification
id, which is also its task id. The event's own id travels inside the envelope.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from celery import Celery

from notifier.errors import InvalidWebhookSignature, NotificationNotFound, NotifierError
from notifier.messages import EVENT_TASK, SEND_TASK

__all__ = ["EVENT_TASK", "SEND_TASK", "NotifierClient"]

# Task ids of events that carry an id are derived from it (uuid5 under this namespace), so a
# publisher that retries ``publish`` with the same id gets the same task id back.
_TASK_NAMESPACE = uuid.UUID("0c8f6a53-7a4e-4c2b-8f0a-4c1f2d9e6b71")


class NotifierClient:
    """Publishes events and notifications to notifier through its Redis broker.

    ``backend_url`` is where ``status`` reads task results (the broker URL when not given,
    which is how the service is configured by default). With ``api_url`` (and ``api_key``),
    ``status`` asks the HTTP API for the notification record instead.
    """

    def __init__(
        self,
        broker_url: str,
        *,
        backend_url: str | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        api_timeout: float = 10.0,
        webhook_secret: str | Sequence[str] | None = None,
    ) -> None:
        self.webhook_secrets = (
            [webhook_secret] if isinstance(webhook_secret, str) else list(webhook_secret or [])
        )
        self.api_url = api_url.rstrip("/") if api_url else None
        self.api_key = api_key
        self.api_timeout = api_timeout
        self._celery = Celery(
            "notifier_client", broker=broker_url, backend=backend_url or broker_url
        )
        self._celery.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            enable_utc=True,
        )

    @property
    def celery(self) -> Celery:
        """The underlying (publish-only) Celery app."""
        return self._celery

    def publish(
        self,
        type: str,
        data: Mapping[str, Any],
        *,
        id: str | None = None,
        source: str | None = None,
        subject: str | None = None,
    ) -> str:
        """Publish a CloudEvents event; returns the ``notifier.event`` task id.

        Give ``id`` (unique per ``source``) to make publishing safe to retry: the service
        produces an event's notifications once, and the same id and source give back the
        same task id. Without ``id`` a random one (uuid4) is put in the envelope.
        """
        if not isinstance(type, str) or not type:
            raise ValueError("type must be a non-empty string")
        event_id = id if id is not None else str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "specversion": "1.0",
            "type": type,
            "id": event_id,
            "data": dict(data),
        }
        if source is not None:
            envelope["source"] = source
        if subject is not None:
            envelope["subject"] = subject
        key = f"{len(source or '')}:{source or ''}:{event_id}"
        task_id = str(uuid.uuid5(_TASK_NAMESPACE, key))
        self._celery.send_task(EVENT_TASK, args=[envelope], task_id=task_id)
        return task_id

    def send(
        self,
        to: str | Sequence[str],
        template: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        **options: Any,
    ) -> str:
        """Send one notification; returns its id (which is also the task id).

        ``options`` are the other fields of the API's body: ``locale``, ``subject``, ``text``,
        ``html``, ``cc``, ``bcc``, ``reply_to``, ``headers``, ``metadata``, ``attachments``
        (dicts with ``filename``, ``content_type`` and ``content`` as bytes or base64 text) and
        ``send_at`` (an aware datetime or ISO 8601 text). Pass ``id`` to make a retry safe:
        a notification id is sent once.
        """
        request: dict[str, Any] = {"to": [to] if isinstance(to, str) else list(to)}
        if not request["to"]:
            raise ValueError("to must name at least one recipient")
        if template is not None:
            request["template"] = template
        if context is not None:
            request["context"] = dict(context)
        for name, value in options.items():
            if value is None:
                continue
            if name == "send_at" and isinstance(value, datetime):
                if value.tzinfo is None:
                    raise ValueError("send_at must be timezone-aware")
                value = value.isoformat()
            elif name == "attachments":
                value = [_attachment(item) for item in value]
            request[name] = value
        task_id = id or str(uuid.uuid4())
        self._celery.send_task(SEND_TASK, kwargs=request, task_id=task_id)
        return task_id

    def status(self, id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """What is known about a task or notification id.

        Through the result backend: ``{"id", "state", "result"}`` (``result`` is the task's
        return value once it succeeded, ``error`` replaces it after a failure). Through the
        API (``api_url``): the notification record as ``GET /api/v1/notifications/{id}``
        returns it; raises NotificationNotFound for an unknown id.
        """
        if self.api_url is not None:
            return self._api_status(id, timeout=timeout)
        result = self._celery.AsyncResult(id)
        state = result.state
        answer: dict[str, Any] = {"id": id, "state": state}
        if state == "SUCCESS":
            answer["result"] = result.result
        elif state in ("FAILURE", "RETRY", "REVOKED"):
            error = result.result
            answer["error"] = (
                f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
            )
        elif isinstance(result.info, dict):  # STARTED carries the worker's pid and host
            answer["info"] = result.info
        return answer

    def _api_status(self, id: str, *, timeout: float | None) -> dict[str, Any]:
        assert self.api_url is not None
        url = f"{self.api_url}/api/v1/notifications/{urllib.parse.quote(id, safe='')}"
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, got {self.api_url!r}")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(  # noqa: S310 - scheme checked above
                request, timeout=timeout or self.api_timeout
            ) as response:
                body: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotificationNotFound(id) from exc
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise NotifierError(f"GET {url}: HTTP {exc.code}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise NotifierError(f"GET {url}: {exc.reason}") from exc
        return body

    def verify_webhook(
        self,
        payload: bytes | str,
        headers: Mapping[str, str],
        *,
        secret: str | Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Check a webhook notifier sent and return its payload (``type``, ``timestamp``, ``data``).

        ``payload`` is the raw request body, exactly as received; ``headers`` the request's
        headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``). ``secret`` is
        the endpoint's ``whsec_`` secret (default: the client's ``webhook_secret``); give two
        while you switch to a rotated one. Raises InvalidWebhookSignature for a forged,
        altered or replayed (over five minutes old) request.
        """
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        secrets = [secret] if isinstance(secret, str) else list(secret or self.webhook_secrets)
        if not secrets:
            raise ValueError("verify_webhook needs the endpoint's secret (whsec_...)")
        plain_headers = {str(name): str(value) for name, value in headers.items()}
        problem = "no secret given"
        for candidate in secrets:
            try:
                verified: dict[str, Any] = Webhook(candidate).verify(payload, plain_headers)
            except WebhookVerificationError as exc:
                problem = str(exc)
                continue
            return verified
        raise InvalidWebhookSignature(f"the webhook does not verify: {problem}")

    def close(self) -> None:
        """Release the broker and backend connections."""
        self._celery.close()

    def __enter__(self) -> NotifierClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _attachment(item: Mapping[str, Any]) -> dict[str, Any]:
    attachment = dict(item)
    content = attachment.get("content")
    if isinstance(content, bytes | bytearray):
        attachment["content"] = base64.b64encode(content).decode("ascii")
    return attachment

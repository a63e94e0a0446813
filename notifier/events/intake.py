"""Event intake: route one event and accept the notifications it produces, at most once.

Used by the ``notifier.event`` task and by ``POST /api/v1/events`` alike. An event with an
``id`` gets deterministic notification ids (uuid5 of its source, id and the rule name), so a
redelivered or republished event finds its notifications already accepted and queues nothing
again; its result is also kept for 24 hours under ``P:event:<sha256 of source+id>`` and
returned, marked ``duplicate``, for every repeat.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import parse_request, validate_notification
from notifier.errors import (
    InvalidNotification,
    MissingVariable,
    NotifierError,
    TemplateError,
)
from notifier.events.envelope import EventEnvelope
from notifier.events.routing import PlannedNotification, RoutingFailure, plan_notifications
from notifier.events.rules import RuleSet
from notifier.intake import accept_notification, new_notification_id, record_rejected
from notifier.observability.metrics import EVENTS_IGNORED
from notifier.settings import Settings
from notifier.storage.store import NotificationStore
from notifier.webhooks.emit import emit
from notifier.webhooks.events import ignored_event

__all__ = ["EVENT_NAMESPACE", "EVENT_RESULT_TTL", "EventResult", "handle_event"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Namespace of the uuid5 notification ids derived from an event's source, id and rule.
EVENT_NAMESPACE = uuid.UUID("5f0d8a8e-2c51-4d8e-9a4b-7f3c2e1d6b90")
#: How long (seconds) a handled event is remembered, so that a repeat is answered as a duplicate.
EVENT_RESULT_TTL = 86400

# Event types this process has already logged as ignored: one line per type, not per event.
_logged_ignored: set[str] = set()


@dataclass(frozen=True, slots=True)
class EventResult:
    """What handling one event did.

    ``notification_ids`` holds every record the event produced, in rule order, including the
    ones recorded as ``failed`` because the event lacked what their rule needed (those are
    also described in ``failures``).
    """

    event_id: str | None
    notification_ids: tuple[str, ...]
    #: The same (source, id) was handled before: nothing new was queued.
    duplicate: bool
    #: No rule exists for this event type.
    ignored: bool
    failures: tuple[RoutingFailure, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON for the API response and the task result."""
        return {
            "event_id": self.event_id,
            "notification_ids": list(self.notification_ids),
            "duplicate": self.duplicate,
            "ignored": self.ignored,
            "failures": [
                {
                    "rule": failure.rule,
                    "template": failure.template,
                    "field": failure.field,
                    "message": failure.message,
                }
                for failure in self.failures
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventResult:
        return cls(
            event_id=data.get("event_id"),
            notification_ids=tuple(data.get("notification_ids") or ()),
            duplicate=bool(data.get("duplicate")),
            ignored=bool(data.get("ignored")),
            failures=tuple(RoutingFailure(**failure) for failure in data.get("failures") or ()),
        )


async def handle_event(
    envelope: EventEnvelope,
    *,
    store: NotificationStore,
    renderer: TemplateRenderer,
    rules: RuleSet,
    settings: Settings,
    via: str = "celery",
    owner: str | None = None,
) -> EventResult:
    """Route ``envelope`` and accept (queue or schedule) each notification it produces.

    ``via`` names the intake (``celery`` or ``api``) for the ignored-events metric. ``owner``
    is the API key that published it: dedupe is per owner (another key's event with the same
    ``source`` + ``id`` is a different event) and the records it creates carry the owner.

    A rule the event cannot satisfy (missing recipient, missing template variable, bad
    address) is recorded as a ``failed`` notification naming the field, never retried.
    Raises StoreUnavailable when Redis cannot be reached; calling again is then safe.
    """
    dedup_key = envelope.dedup_key
    if dedup_key is not None and owner is not None:
        dedup_key = f"{owner}\n{dedup_key}"
    result_key = store.keys.event_result(dedup_key) if dedup_key is not None else None
    if result_key is not None:
        stored = await store.call(lambda: store.redis.get(result_key))
        if stored:
            return _as_duplicate(stored)

    if not rules.rules_for(envelope.type):
        result = EventResult(envelope.id, (), duplicate=False, ignored=True, failures=())
        await _record_ignored(store, envelope)
        EVENTS_IGNORED.labels(via=via).inc()
        ignored = ignored_event(
            event_id=envelope.id,
            event_type=envelope.type,
            source=envelope.source,
            owner=owner,
            at=time.time(),
        )
        await emit(store.redis, store.keys, ignored)
    else:
        result = await _accept_planned(
            envelope,
            store=store,
            renderer=renderer,
            rules=rules,
            settings=settings,
            dedup_key=dedup_key,
            owner=owner,
        )

    if result_key is not None:
        # Stored last, so an event redelivered after a crash half-way is handled again (its
        # deterministic ids make that safe). A concurrent twin that stored first wins.
        payload = orjson.dumps(result.as_dict())
        stored_now = await store.call(
            lambda: store.redis.set(result_key, payload, nx=True, ex=EVENT_RESULT_TTL)
        )
        if not stored_now:
            stored = await store.call(lambda: store.redis.get(result_key))
            if stored:
                return _as_duplicate(stored)
    return result


async def _accept_planned(
    envelope: EventEnvelope,
    *,
    store: NotificationStore,
    renderer: TemplateRenderer,
    rules: RuleSet,
    settings: Settings,
    dedup_key: str | None,
    owner: str | None,
) -> EventResult:
    ids: list[str] = []
    failures: list[RoutingFailure] = []
    now = datetime.now(UTC)
    for planned in plan_notifications(envelope, rules):
        notification_id = _notification_id(dedup_key, planned.rule)
        ids.append(notification_id)
        if isinstance(planned, RoutingFailure):
            failures.append(planned)
            await _record_failure(
                store, envelope, notification_id, planned, payload={}, owner=owner
            )
            continue
        request_data = _request_data(envelope, planned, now=now)
        try:
            notification = validate_notification(
                parse_request(request_data), settings=settings, renderer=renderer
            )
        except (InvalidNotification, TemplateError) as exc:
            failure = _failure_from_error(planned, exc)
            failures.append(failure)
            await _record_failure(
                store, envelope, notification_id, failure, payload=request_data, owner=owner
            )
            continue
        await accept_notification(
            store,
            notification,
            source="event",
            notification_id=notification_id,
            event_id=envelope.id,
            now=now,
            owner=owner,
        )
    if failures:
        log.warning(
            "event %s (%s): %d notification(s) failed: %s",
            envelope.id or "-",
            envelope.type,
            len(failures),
            "; ".join(f"{f.rule}: {f.field}" for f in failures),
        )
    return EventResult(
        envelope.id, tuple(ids), duplicate=False, ignored=False, failures=tuple(failures)
    )


def _notification_id(dedup_key: str | None, rule: str) -> str:
    if dedup_key is None:
        return new_notification_id()
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{dedup_key}\n{rule}"))


def _payload_json(payload: dict[str, Any]) -> str:
    """The failed request as JSON; data orjson refuses (integers beyond 64 bits, deep nesting)
    still leaves a record: the standard library's encoder, else the request without context."""
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(payload, default=str)
    except (ValueError, RecursionError):
        return json.dumps({**payload, "context": "(not stored: not encodable)"}, default=str)


def _request_data(
    envelope: EventEnvelope, planned: PlannedNotification, *, now: datetime
) -> dict[str, Any]:
    """The wire-shape request (as ``notifier.send`` takes it) for one planned notification."""
    metadata = {"event_type": envelope.type, "rule": planned.rule}
    if envelope.id is not None:
        metadata["event_id"] = envelope.id
    data: dict[str, Any] = {
        "to": list(planned.to),
        "cc": list(planned.cc),
        "bcc": list(planned.bcc),
        "template": planned.template,
        "context": dict(planned.context),
        "locale": planned.locale,
        "subject": planned.subject,
        "metadata": metadata,
    }
    if planned.delay_seconds:
        data["send_at"] = (now + timedelta(seconds=planned.delay_seconds)).isoformat()
    return data


def _failure_from_error(planned: PlannedNotification, exc: NotifierError) -> RoutingFailure:
    if isinstance(exc, MissingVariable):
        # Template variables come from the event's data (rule context is fixed and checked
        # by operators), so name the field the publisher has to add.
        field = f"data.{exc.variable}"
    else:
        field = getattr(exc, "field", None) or "template"
    text = str(exc)
    return RoutingFailure(
        rule=planned.rule,
        template=planned.template,
        field=field,
        message=text if text.startswith(field) else f"{field}: {text}",
    )


async def _record_failure(
    store: NotificationStore,
    envelope: EventEnvelope,
    notification_id: str,
    failure: RoutingFailure,
    *,
    payload: dict[str, Any],
    owner: str | None = None,
) -> None:
    fields = {
        "source": "event",
        "template": failure.template,
        "to": orjson.dumps(payload.get("to") or []).decode(),
        "payload": _payload_json(payload or {"template": failure.template}),
        "metadata": orjson.dumps({"event_type": envelope.type, "rule": failure.rule}).decode(),
        "field": failure.field,
    }
    if envelope.id is not None:
        fields["event_id"] = envelope.id
    if owner:
        fields["owner"] = owner
    await record_rejected(
        store,
        notification_id,
        fields=fields,
        reason=f"event {envelope.type!r}, rule {failure.rule!r}: {failure.message}",
    )


async def _record_ignored(store: NotificationStore, envelope: EventEnvelope) -> None:
    await store.call(lambda: store.redis.hincrby(store.keys.events_ignored, envelope.type, 1))
    if envelope.type not in _logged_ignored:
        _logged_ignored.add(envelope.type)
        log.warning(
            "ignoring events of type %r: no routing rule for it (counted in %s; "
            "logged once per type)",
            envelope.type,
            store.keys.events_ignored,
        )


def _as_duplicate(stored: str | bytes) -> EventResult:
    original = EventResult.from_dict(orjson.loads(stored))
    return EventResult(
        original.event_id,
        original.notification_ids,
        duplicate=True,
        ignored=original.ignored,
        failures=original.failures,
    )

"""NotificationStore: notification records, their status indexes and the schedule, in Redis.

The record types live in :mod:`notifier.storage.records`; they are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from notifier.errors import InvalidTransition, NotificationNotFound
from notifier.storage.records import (
    STATUSES,
    AcceptItem,
    AcceptResult,
    Attempt,
    ClaimResult,
    NotificationRecord,
    RecordPage,
    Status,
    parse_accept_reply,
    parse_claim_reply,
)
from notifier.storage.redis import connect_redis
from notifier.storage.scripted import ScriptedStore, dumps_json

__all__ = [
    "STATUSES",
    "AcceptItem",
    "AcceptResult",
    "Attempt",
    "ClaimResult",
    "NotificationRecord",
    "NotificationStore",
    "RecordPage",
    "connect_redis",
]


class NotificationStore(ScriptedStore):
    """Reads and atomic status changes of notification records.

    Every method raises StoreUnavailable when Redis cannot be reached. The writes that take
    ``events`` (webhook events, JSON) queue them for the fan-out in the same atomic step, only
    if the write is made (a record created, a transition allowed).
    """

    # Writes.

    async def accept(
        self,
        *,
        notification_id: str,
        fields: Mapping[str, str],
        message: bytes | None,
        due: float | None = None,
        idempotency_key: str | None = None,
        idempotency_value: str = "",
        idempotency_ttl: int = 86400,
        now: float | None = None,
        events: Sequence[str] = (),
    ) -> AcceptResult:
        """Create the record and queue its message, or schedule it when ``due`` is given.

        With ``message=None`` the record is created without queueing anything (the caller is
        already the task that will send it).
        """
        item = AcceptItem(
            notification_id=notification_id,
            fields=fields,
            message=message,
            due=due,
            idempotency_key=idempotency_key,
            idempotency_value=idempotency_value,
            idempotency_ttl=idempotency_ttl,
            events=tuple(events),
        )
        keys, args = self._accept_args(item, now=time.time() if now is None else now)
        reply = await self._call(lambda: self._accept(keys=keys, args=args))
        result = parse_accept_reply(notification_id, reply)
        if message is not None and due is None and _to_publish(result):
            await self._publish([message])
        return result

    def _accept_args(self, item: AcceptItem, *, now: float) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``accept.lua`` for ``item``."""
        if item.message is None:
            status, action = "queued", "none"
        elif item.due is not None:
            status, action = "scheduled", "schedule"
        else:
            status, action = "queued", "none" if self.sink else "queue"
        keys = [*self._script_keys, self.keys.record(item.notification_id)]
        if item.idempotency_key:
            keys.append(item.idempotency_key)
        args = [
            item.notification_id,
            repr(now),
            self.retention_seconds,
            status,
            dumps_json(dict(item.fields)),
            action,
            item.message or b"",
            repr(item.due) if item.due is not None else "",
            item.idempotency_value,
            item.idempotency_ttl,
            *item.events,
        ]
        return keys, args

    async def accept_many(
        self,
        items: Sequence[AcceptItem],
        *,
        messages: Sequence[bytes] = (),
        now: float | None = None,
    ) -> list[AcceptResult]:
        """Accept several notifications and queue ``messages``, all in ONE atomic step.

        Each item goes through the same script as :meth:`accept` (so duplicates and
        idempotency keys behave per item), inside one MULTI/EXEC with the LPUSH of
        ``messages`` (typically ``notifier.deliver_batch`` messages naming the items'
        ids): either everything is written or, when Redis is unreachable, nothing is.
        """
        now = time.time() if now is None else now
        if not items and not messages:
            return []

        async def write() -> list[Any]:
            async with self.redis.pipeline(transaction=True) as pipe:
                for item in items:
                    keys, args = self._accept_args(item, now=now)
                    await self._accept(keys=keys, args=args, client=pipe)
                if messages and self.sink is None:
                    pipe.lpush(self.queue, *messages)
                replies: list[Any] = await pipe.execute()
            return replies

        replies = await self._call(write)
        results = [
            parse_accept_reply(item.notification_id, reply)
            for item, reply in zip(items, replies, strict=False)
        ]
        if self.sink is not None:
            queued = [
                item.message
                for item, result in zip(items, results, strict=True)
                if item.message is not None and item.due is None and _to_publish(result)
            ]
            await self._publish([*queued, *messages])
        return results

    async def create_and_claim(
        self,
        notification_id: str,
        *,
        fields: Mapping[str, str],
        lease_seconds: float,
        now: float | None = None,
        events: Sequence[str] = (),
    ) -> tuple[ClaimResult, bool]:
        """Create the record already claimed, or claim the existing one: one round trip.

        Returns the claim (as :meth:`claim` would) and whether the record was created now.
        A created record starts ``sending`` with ``attempt_count`` 1, exactly what
        ``accept(message=None)`` followed by ``claim`` leaves.
        """
        now = time.time() if now is None else now
        reply: list[Any] = await self._call(
            lambda: self._create_and_claim(
                keys=[*self._script_keys, self.keys.record(notification_id)],
                args=[
                    notification_id,
                    repr(now),
                    self.retention_seconds,
                    dumps_json(dict(fields)),
                    repr(now + lease_seconds),
                    *events,
                ],
            )
        )
        return parse_claim_reply(reply), reply[0] == "created"

    async def enqueue(self, *messages: bytes) -> None:
        """Push task messages onto the queue (one round trip), or publish them (BROKER_URL)."""
        if self.sink is not None:
            await self._publish(list(messages))
        elif messages:
            await self._call(lambda: self.redis.lpush(self.queue, *messages))

    async def transition(
        self,
        notification_id: str,
        *,
        allowed: Sequence[str],
        to: Status,
        fields: Mapping[str, str] | None = None,
        attempt: Attempt | None = None,
        action: Literal["none", "queue", "schedule", "unschedule"] = "none",
        message: bytes | None = None,
        due: float | None = None,
        now: float | None = None,
        events: Sequence[str] = (),
    ) -> str:
        """Move a record between statuses atomically; returns the previous status.

        Raises NotificationNotFound or InvalidTransition (carrying the current status).
        """
        publish = action == "queue" and self.sink is not None
        reply = await self._run_transition(
            notification_id,
            allowed=allowed,
            to=to,
            fields=fields,
            attempt=attempt,
            action="none" if publish else action,
            message=message,
            due=due,
            now=now,
            events=events,
        )
        if reply[0] == "missing":
            raise NotificationNotFound(notification_id)
        if reply[0] == "refused":
            raise InvalidTransition(
                f"notification {notification_id} is {reply[1]}", status=str(reply[1])
            )
        if publish and message:
            await self._publish([message])
        return str(reply[1])

    async def _run_transition(
        self,
        notification_id: str,
        *,
        allowed: Sequence[str],
        to: str,
        fields: Mapping[str, str] | None = None,
        attempt: Attempt | None = None,
        action: str = "none",
        message: bytes | None = None,
        due: float | None = None,
        now: float | None = None,
        honour_lease: bool = False,
        claim: bool = False,
        events: Sequence[str] = (),
    ) -> list[Any]:
        now = time.time() if now is None else now
        reply: list[Any] = await self._call(
            lambda: self._transition(
                keys=[
                    *self._script_keys,
                    self.keys.record(notification_id),
                    self.keys.attempts(notification_id),
                ],
                args=[
                    notification_id,
                    repr(now),
                    self.retention_seconds,
                    ",".join(allowed),
                    to,
                    dumps_json(dict(fields or {})),
                    attempt.as_json() if attempt else "",
                    action,
                    message or b"",
                    repr(due) if due is not None else "",
                    "1" if honour_lease else "0",
                    "1" if claim else "0",
                    *events,
                ],
            )
        )
        return reply

    async def claim(
        self, notification_id: str, *, lease_seconds: float, now: float | None = None
    ) -> ClaimResult:
        """Take the right to send now: pending -> sending, with a lease other deliveries respect.

        A record left ``sending`` by a crashed attempt can be claimed once its lease ran out.
        A ``scheduled`` one cannot: only the dispatcher releases it (to ``queued``) when due, so
        a redelivered or repeated task message never sends it early (outcome ``done``).
        """
        now = time.time() if now is None else now
        reply = await self._run_transition(
            notification_id,
            allowed=("queued", "retrying", "sending"),
            to="sending",
            fields={"lease_until": repr(now + lease_seconds)},
            honour_lease=True,
            claim=True,
            now=now,
        )
        return parse_claim_reply(reply)

    async def defer(self, notification_id: str, *, until: float, message: bytes) -> None:
        """Queue ``message`` at ``until`` unless a later delivery is already scheduled."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(self.keys.scheduled, {notification_id: until}, nx=True)
                pipe.hsetnx(self.keys.scheduled_messages, notification_id, message)
                await pipe.execute()

        await self._call(write)


def _to_publish(result: AcceptResult) -> bool:
    """With RabbitMQ, whether an accept publishes its message: when it created the record, and
    when the id's record is still ``queued`` (the same id accepted again: an event or task
    redelivered after its worker died between writing the record and publishing, whose message
    may never have left). A spare copy is harmless: the claim lets one delivery send."""
    return result.created or result.status == "queued"

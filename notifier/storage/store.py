"""NotificationStore: notification records, their status indexes and the schedule, in Redis.

The record types live in :mod:`notifier.storage.records`; they are re-exported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from notifier.errors import InvalidTransition, NotificationNotFound
from notifier.messages import DEFAULT_QUEUE
from notifier.storage import scripts as store_scripts
from notifier.storage.keys import Keys
from notifier.storage.reads import RecordReader
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
from notifier.storage.sink import MessageSink

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


log = logging.getLogger(__name__)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class NotificationStore(RecordReader):
    """Reads and atomic status changes of notification records.

    Every method raises StoreUnavailable when Redis cannot be reached.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "notifier",
        retention_seconds: int = 7 * 86400,
        queue: str = DEFAULT_QUEUE,
        sink: MessageSink | None = None,
    ) -> None:
        super().__init__(redis, Keys(prefix, queue))
        self.retention_seconds = retention_seconds
        #: RabbitMQ (BROKER_URL): scripts write records only, messages are published after.
        self.sink = sink
        # The keys every store script gets first (see scripts/prelude.lua).
        self._script_keys = self.keys.script_keys()
        self._accept = redis.register_script(store_scripts.ACCEPT)
        self._transition = redis.register_script(store_scripts.TRANSITION)
        self._dispatch = redis.register_script(store_scripts.DISPATCH_DUE)
        self._cleanup = redis.register_script(store_scripts.CLEANUP)
        self._create_and_claim = redis.register_script(store_scripts.CREATE_AND_CLAIM)
        self._find_stuck = redis.register_script(store_scripts.FIND_STUCK)

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
        )
        keys, args = self._accept_args(item, now=time.time() if now is None else now)
        reply = await self._call(lambda: self._accept(keys=keys, args=args))
        result = parse_accept_reply(notification_id, reply)
        if result.created and message is not None and due is None:
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
            _dumps(dict(item.fields)),
            action,
            item.message or b"",
            repr(item.due) if item.due is not None else "",
            item.idempotency_value,
            item.idempotency_ttl,
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
                if result.created and item.message is not None and item.due is None
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
                    _dumps(dict(fields)),
                    repr(now + lease_seconds),
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

    async def _publish(self, messages: Sequence[bytes | str]) -> None:
        """Publish messages whose records are written; a failure leaves them to recovery.

        Their records are ``queued`` (or ``retrying``/``sending``): the recovery sweep requeues
        them after RECOVERY_AFTER, so the caller's write stands and is not reported as failed.
        """
        if self.sink is None or not messages:
            return
        try:
            await self.sink.publish(messages)
        except Exception as exc:
            log.warning(
                "publishing %d message(s) to RabbitMQ failed (%s); the recovery sweep "
                "requeues them",
                len(messages),
                exc,
            )

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
                    _dumps(dict(fields or {})),
                    attempt.as_json() if attempt else "",
                    action,
                    message or b"",
                    repr(due) if due is not None else "",
                    "1" if honour_lease else "0",
                    "1" if claim else "0",
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

    async def dispatch_due(self, *, now: float | None = None, limit: int = 500) -> int:
        """Queue the scheduled messages that are due; returns how many were queued."""
        now = time.time() if now is None else now
        due = await self._ids_up_to(self.keys.scheduled, now, offset=0, count=limit)
        if not due:
            return 0
        # With a sink the script hands the due messages back instead of pushing them.
        mode = "return" if self.sink is not None else "push"
        reply = await self._call(
            lambda: self._dispatch(
                keys=[*self._script_keys, *map(self.keys.record, due)],
                args=[repr(now), mode, *due],
            )
        )
        if self.sink is None:
            return int(reply)
        await self._publish(list(reply))
        return len(reply)

    async def cleanup(self, *, now: float | None = None) -> int:
        """Forget index entries whose records have expired."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_seconds
        removed = await self._call(
            lambda: self._cleanup(keys=self._script_keys, args=[repr(cutoff)])
        )
        return int(removed)

    async def find_stuck(
        self, status: str, *, now: float, stale_after: float, offset: int, count: int
    ) -> tuple[int, list[str]]:
        """Of ``count`` ids of the ``status`` index from ``offset``, mark those with no progress
        for ``stale_after`` seconds and no schedule entry as recovered, and return them.

        Returns how many ids were looked at and the stuck ones; a marked record is not returned
        again for ``stale_after`` seconds (see ``notifier.worker.recovery``).
        """
        ids = await self._ids_up_to(
            self.keys.status(status), now - stale_after, offset=offset, count=count
        )
        if not ids:
            return 0, []
        stuck: list[str] = await self._call(
            lambda: self._find_stuck(
                keys=[*self._script_keys, *map(self.keys.record, ids)],
                args=[status, repr(now), repr(stale_after), *ids],
            )
        )
        return len(ids), list(stuck)

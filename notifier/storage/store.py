"""NotificationStore: notification records, their status indexes and the schedule, in Redis."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson
import redis.asyncio as aioredis

from notifier.errors import InvalidTransition, NotificationNotFound
from notifier.messages import DEFAULT_QUEUE
from notifier.storage import scripts as store_scripts
from notifier.storage.keys import Keys
from notifier.storage.redis import connect_redis, map_redis_errors

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

Status = Literal["queued", "scheduled", "sending", "retrying", "sent", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = (
    "queued",
    "scheduled",
    "sending",
    "retrying",
    "sent",
    "failed",
    "cancelled",
)
#: Statuses from which a notification may still be sent.
PENDING: tuple[Status, ...] = ("queued", "scheduled", "retrying")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One SMTP attempt as recorded."""

    number: int
    at: float
    outcome: Literal["sent", "transient", "permanent"]
    code: int | None = None
    message: str = ""
    refused: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "number": self.number,
                "at": self.at,
                "outcome": self.outcome,
                "code": self.code,
                "message": self.message,
                "refused": dict(self.refused),
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Attempt:
        data = orjson.loads(raw)
        return cls(
            number=data["number"],
            at=data["at"],
            outcome=data["outcome"],
            code=data.get("code"),
            message=data.get("message", ""),
            refused=data.get("refused") or {},
        )


def _float(value: str | None) -> float | None:
    return float(value) if value else None


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """Everything known about one notification."""

    id: str
    status: Status
    source: str
    template: str | None
    locale: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    created_at: float
    updated_at: float
    sent_at: float | None
    send_at: float | None
    message_id: str | None
    smtp_reply: str | None
    reason: str | None
    error_code: int | None
    attempt_count: int
    metadata: Mapping[str, str]
    payload: Mapping[str, Any]
    delivered_to: tuple[str, ...]
    refused: Mapping[str, Mapping[str, Any]]
    event_id: str | None
    attempts: tuple[Attempt, ...] = ()
    #: The API key name that created it (None: created by a Celery publisher or an open API).
    owner: str | None = None

    @classmethod
    def from_hash(cls, data: Mapping[str, str], attempts: Sequence[str] = ()) -> NotificationRecord:
        def json_field(name: str, default: Any) -> Any:
            raw = data.get(name)
            return orjson.loads(raw) if raw else default

        code = data.get("error_code")
        return cls(
            id=data["id"],
            status=data["status"],  # type: ignore[arg-type]
            source=data.get("source", "api"),
            template=data.get("template") or None,
            locale=data.get("locale") or None,
            to=tuple(json_field("to", [])),
            cc=tuple(json_field("cc", [])),
            bcc=tuple(json_field("bcc", [])),
            created_at=float(data["created_at"]),
            updated_at=float(data.get("updated_at") or data["created_at"]),
            sent_at=_float(data.get("sent_at")),
            send_at=_float(data.get("send_at")),
            message_id=data.get("message_id") or None,
            smtp_reply=data.get("smtp_reply") or None,
            reason=data.get("reason") or None,
            error_code=int(code) if code else None,
            attempt_count=int(data.get("attempt_count") or 0),
            metadata=json_field("metadata", {}),
            payload=json_field("payload", {}),
            delivered_to=tuple(json_field("delivered_to", [])),
            refused=json_field("refused", {}),
            event_id=data.get("event_id") or None,
            attempts=tuple(Attempt.from_json(raw) for raw in attempts),
            owner=data.get("owner") or None,
        )


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What happened to a notification handed to the store."""

    id: str
    status: str
    #: False when the id or idempotency key was already known and nothing new was queued.
    created: bool
    #: The stored idempotency value (``id|fingerprint``) when the key was seen before.
    idempotency_value: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of asking to send a notification now."""

    outcome: Literal["claimed", "missing", "busy", "done"]
    status: str | None = None
    record: NotificationRecord | None = None
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class RecordPage:
    records: tuple[NotificationRecord, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AcceptItem:
    """One notification for :meth:`NotificationStore.accept_many` (arguments as ``accept``)."""

    notification_id: str
    fields: Mapping[str, str]
    message: bytes | None = None
    due: float | None = None
    idempotency_key: str | None = None
    idempotency_value: str = ""
    idempotency_ttl: int = 86400


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _accept_result(notification_id: str, reply: list[Any]) -> AcceptResult:
    kind = reply[0]
    if kind == "duplicate":
        original_id = reply[1].split("|", 1)[0]
        return AcceptResult(
            id=original_id, status="duplicate", created=False, idempotency_value=reply[1]
        )
    return AcceptResult(id=notification_id, status=reply[1], created=kind == "accepted")


def _claim_result(reply: list[Any]) -> ClaimResult:
    kind = reply[0]
    if kind == "missing":
        return ClaimResult(outcome="missing")
    if kind == "busy":
        return ClaimResult(outcome="busy", status="sending", lease_until=float(reply[1]))
    if kind == "refused":
        return ClaimResult(outcome="done", status=str(reply[1]))
    flat = reply[2]
    data = dict(zip(flat[::2], flat[1::2], strict=True))
    return ClaimResult(
        outcome="claimed", status=str(reply[1]), record=NotificationRecord.from_hash(data)
    )


class NotificationStore:
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
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self.queue = queue
        self.keys = Keys(prefix, queue)
        self._accept = redis.register_script(store_scripts.ACCEPT)
        self._transition = redis.register_script(store_scripts.TRANSITION)
        self._dispatch = redis.register_script(store_scripts.DISPATCH_DUE)
        self._cleanup = redis.register_script(store_scripts.CLEANUP)
        self._create_and_claim = redis.register_script(store_scripts.CREATE_AND_CLAIM)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        with map_redis_errors():
            return await operation()

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis operation of a module built on this store (``notifier.worker.recovery``,
        ``notifier.events``), turning connection errors into StoreUnavailable."""
        return await self._call(operation)

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
        now = time.time() if now is None else now
        args = self._accept_args(
            notification_id=notification_id,
            fields=fields,
            message=message,
            due=due,
            idempotency_key=idempotency_key,
            idempotency_value=idempotency_value,
            idempotency_ttl=idempotency_ttl,
            now=now,
        )
        reply = await self._call(lambda: self._accept(args=args))
        return _accept_result(notification_id, reply)

    def _accept_args(
        self,
        *,
        notification_id: str,
        fields: Mapping[str, str],
        message: bytes | None,
        due: float | None,
        idempotency_key: str | None,
        idempotency_value: str,
        idempotency_ttl: int,
        now: float,
    ) -> list[Any]:
        if message is None:
            status, action = "queued", "none"
        elif due is not None:
            status, action = "scheduled", "schedule"
        else:
            status, action = "queued", "queue"
        return [
            self.prefix,
            notification_id,
            repr(now),
            self.retention_seconds,
            status,
            _dumps(dict(fields)),
            action,
            message or b"",
            repr(due) if due is not None else "",
            self.queue,
            idempotency_key or "",
            idempotency_value,
            idempotency_ttl,
        ]

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
                    args = self._accept_args(
                        notification_id=item.notification_id,
                        fields=item.fields,
                        message=item.message,
                        due=item.due,
                        idempotency_key=item.idempotency_key,
                        idempotency_value=item.idempotency_value,
                        idempotency_ttl=item.idempotency_ttl,
                        now=now,
                    )
                    await self._accept(args=args, client=pipe)
                if messages:
                    pipe.lpush(self.queue, *messages)
                replies: list[Any] = await pipe.execute()
            return replies

        replies = await self._call(write)
        return [
            _accept_result(item.notification_id, reply)
            for item, reply in zip(items, replies, strict=False)
        ]

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
                args=[
                    self.prefix,
                    notification_id,
                    repr(now),
                    self.retention_seconds,
                    _dumps(dict(fields)),
                    repr(now + lease_seconds),
                ]
            )
        )
        return _claim_result(reply), reply[0] == "created"

    async def enqueue(self, *messages: bytes) -> None:
        """Push task messages onto the queue (one round trip)."""
        if messages:
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
    ) -> str:
        """Move a record between statuses atomically; returns the previous status.

        Raises NotificationNotFound or InvalidTransition (carrying the current status).
        """
        reply = await self._run_transition(
            notification_id,
            allowed=allowed,
            to=to,
            fields=fields,
            attempt=attempt,
            action=action,
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
                args=[
                    self.prefix,
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
                    self.queue,
                    "1" if honour_lease else "0",
                    "1" if claim else "0",
                ]
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
        return _claim_result(reply)

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
        count = await self._call(
            lambda: self._dispatch(args=[self.prefix, repr(now), limit, self.queue])
        )
        return int(count)

    async def cleanup(self, *, now: float | None = None) -> int:
        """Forget index entries whose records have expired."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_seconds
        removed = await self._call(
            lambda: self._cleanup(args=[self.prefix, repr(cutoff), ",".join(STATUSES)])
        )
        return int(removed)

    # Reads.

    async def get(self, notification_id: str) -> NotificationRecord:
        async def read() -> tuple[dict[str, str], list[str]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys.record(notification_id))
                pipe.lrange(self.keys.attempts(notification_id), 0, -1)
                data, attempts = await pipe.execute()
            return data, attempts

        data, attempts = await self._call(read)
        if not data:
            raise NotificationNotFound(notification_id)
        return NotificationRecord.from_hash(data, attempts)

    async def find(self, notification_id: str) -> NotificationRecord | None:
        try:
            return await self.get(notification_id)
        except NotificationNotFound:
            return None

    async def list(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RecordPage:
        """Records newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
        key = self.keys.index(status)
        max_score: str = "+inf"
        after: tuple[float, str] | None = None
        if cursor:
            score_text, _, last_id = cursor.partition(":")
            after = (float(score_text), last_id)
            max_score = score_text
        ids: list[tuple[str, float]] = []
        offset = 0
        while len(ids) < limit + 1:
            batch: list[tuple[str, float]] = await self._call(
                lambda offset=offset: self.redis.zrevrangebyscore(  # type: ignore[misc,arg-type]
                    key, max_score, "-inf", start=offset, num=limit + 1, withscores=True
                )
            )
            if not batch:
                break
            offset += len(batch)
            for member, score in batch:
                # Equal scores come in descending id order; resume strictly after the cursor.
                if after and score == after[0] and member >= after[1]:
                    continue
                ids.append((member, score))
        page = ids[:limit]
        records = []
        for member, _ in page:
            record = await self.find(member)
            if record is not None:
                records.append(record)
        next_cursor = None
        if len(ids) > limit and page:
            last_id, last_score = page[-1]
            next_cursor = f"{last_score!r}:{last_id}"
        return RecordPage(records=tuple(records), next_cursor=next_cursor)

    async def counts(self) -> dict[str, int]:
        async def read() -> list[int]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for status in STATUSES:
                    pipe.zcard(self.keys.status(status))
                result: list[int] = await pipe.execute()
            return result

        values = await self._call(read)
        return dict(zip(STATUSES, values, strict=True))

    async def scheduled_count(self) -> int:
        return int(await self._call(lambda: self.redis.zcard(self.keys.scheduled)))

    async def queue_length(self) -> int:
        return int(await self._call(lambda: self.redis.llen(self.queue)))

    async def ping(self) -> None:
        await self._call(self.redis.ping)

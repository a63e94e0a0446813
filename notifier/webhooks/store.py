"""WebhookStore: endpoints, messages, per-endpoint delivery state and the retry schedule, in Redis.

Every key name comes from :class:`notifier.storage.keys.Keys`; every script gets its keys in
KEYS. A delivery is the pair ``ENDPOINT MESSAGE``: its state (``status|attempts``) lives in the
endpoint's state hash, and while it waits for its next try it is a member of ``P:wh:scheduled``.
"""

from __future__ import annotations

import logging
import secrets as token
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from notifier.errors import WebhookEndpointNotFound
from notifier.messages import WEBHOOK_DELIVER_TASK, WEBHOOKS_QUEUE, build_task_message
from notifier.storage.sink import MessageSink
from notifier.webhooks.endpoints import EndpointStore
from notifier.webhooks.events import QueuedEvent
from notifier.webhooks.models import DeliveryState, Endpoint
from notifier.webhooks.scripts import DISPATCH, FANOUT, RECORD, REPLAY

__all__ = ["FANOUT_BATCH", "WebhookStore", "delivery_member"]

log = logging.getLogger(__name__)

#: Events fanned out per script call.
FANOUT_BATCH = 200


def delivery_member(endpoint_id: str, message_id: str) -> str:
    """The schedule's member for one delivery."""
    return f"{endpoint_id} {message_id}"


class WebhookStore(EndpointStore):
    """Endpoints and deliveries. Every method raises StoreUnavailable when Redis is down."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "notifier",
        retention_seconds: int = 7 * 86400,
        sink: MessageSink | None = None,
    ) -> None:
        super().__init__(redis, prefix=prefix)
        self.retention_seconds = retention_seconds
        #: RabbitMQ (BROKER_URL): due deliveries are published after the script leased them.
        self.sink = sink
        self._fanout = redis.register_script(FANOUT)
        self._dispatch = redis.register_script(DISPATCH)
        self._record = redis.register_script(RECORD)
        self._replay = redis.register_script(REPLAY)

    # Messages and deliveries.

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        raw = await self._call(lambda: self.redis.get(self.keys.webhook_message(message_id)))
        return orjson.loads(raw) if raw else None

    async def delivery_state(self, endpoint_id: str, message_id: str) -> DeliveryState | None:
        raw = await self._call(
            lambda: self.redis.hget(self.keys.webhook_endpoint_state(endpoint_id), message_id)
        )
        return DeliveryState.parse(str(raw) if raw is not None else None)

    async def read_inbox(self, count: int = FANOUT_BATCH) -> list[QueuedEvent]:
        """The oldest ``count`` events waiting for the fan-out, in the inbox's order."""
        raws = await self._call(lambda: self.redis.lrange(self.keys.webhook_inbox, -count, -1))
        return [QueuedEvent.from_json(str(raw)) for raw in raws]

    async def fan_out(
        self,
        events: Sequence[QueuedEvent],
        endpoints: Sequence[Endpoint],
        *,
        now: float | None = None,
    ) -> int:
        """Schedule each event read by :meth:`read_inbox` for the endpoints that want it, and
        take them off the inbox, in one step. Returns how many deliveries were scheduled, or
        -1 when another pump handled these events first."""
        now = time.time() if now is None else now
        keys = [self.keys.webhook_inbox, self.keys.webhook_scheduled]
        args: list[str | int] = [len(events), repr(now), self.retention_seconds]
        for event in events:
            targets = [e.id for e in endpoints if e.wants(event.type, event.owner)]
            message = orjson.dumps({"type": event.type, "owner": event.owner, "body": event.body})
            args += [event.raw, message.decode(), event.id, repr(event.at), len(targets), *targets]
            keys.append(self.keys.webhook_message(event.id))
            for endpoint_id in targets:
                keys += [
                    self.keys.webhook_endpoint_messages(endpoint_id),
                    self.keys.webhook_endpoint_state(endpoint_id),
                    self.keys.webhook_endpoint_pending(endpoint_id),
                ]
        result = await self._call(lambda: self._fanout(keys=keys, args=args))
        return int(result)

    async def dispatch_due(
        self, *, lease_seconds: float, now: float | None = None, limit: int = 500
    ) -> int:
        """Queue the deliveries that are due on the ``webhooks`` queue; returns how many.

        Each stays on the schedule ``lease_seconds`` ahead, in case its task message is lost;
        make it longer than BROKER_VISIBILITY_TIMEOUT + TASK_TIME_LIMIT, after which the broker
        itself hands an unacknowledged task out again.
        """
        now = time.time() if now is None else now
        members = await self._call(
            lambda: self.redis.zrangebyscore(self.keys.webhook_scheduled, "-inf", now, 0, limit)
        )
        if not members:
            return 0
        mode = "return" if self.sink is not None else "push"
        args: list[str] = [repr(now), repr(now + lease_seconds), mode]
        for member in map(str, members):
            endpoint_id, _, message_id = member.partition(" ")
            message = build_task_message(
                task=WEBHOOK_DELIVER_TASK,
                task_id=token.token_hex(16),
                args=[endpoint_id, message_id],
                queue=WEBHOOKS_QUEUE,
            )
            args += [member, message.decode()]
        keys = [self.keys.webhook_scheduled, WEBHOOKS_QUEUE]
        reply = await self._call(lambda: self._dispatch(keys=keys, args=args))
        if self.sink is None:
            return int(reply)
        taken, messages = list(map(str, reply[::2])), list(reply[1::2])
        try:
            await self.sink.publish(messages)
        except Exception as exc:
            # Never published: due again at once, so the next tick tries again.
            log.warning("publishing %d webhook deliveries failed (%s)", len(taken), exc)
            due_again = dict.fromkeys(taken, now)
            await self._call(
                lambda: self.redis.zadd(self.keys.webhook_scheduled, due_again, xx=True)
            )
            return 0
        return len(taken)

    async def schedule(self, endpoint_id: str, message_id: str, *, due: float) -> None:
        member = delivery_member(endpoint_id, message_id)
        await self._call(lambda: self.redis.zadd(self.keys.webhook_scheduled, {member: due}))

    async def unschedule(self, endpoint_id: str, message_id: str) -> None:
        """Take a delivery off the schedule (its lease): nothing more to do for it."""
        member = delivery_member(endpoint_id, message_id)
        await self._call(lambda: self.redis.zrem(self.keys.webhook_scheduled, member))

    async def record_attempt(
        self,
        endpoint_id: str,
        message_id: str,
        *,
        attempt: Mapping[str, Any],
        state: DeliveryState,
        outcome: Literal["delivered", "retry", "failed"],
        due: float,
        log_size: int,
        now: float,
    ) -> float | None:
        """Log one attempt and move the delivery on; returns since when the endpoint has been
        failing (None after a success), or raises WebhookEndpointNotFound if it was deleted."""
        k = self.keys
        keys = [
            k.webhook_endpoint_log(endpoint_id),
            k.webhook_endpoint_state(endpoint_id),
            k.webhook_endpoint_pending(endpoint_id),
            k.webhook_endpoint_failed(endpoint_id),
            k.webhook_scheduled,
            k.webhook_endpoint(endpoint_id),
        ]
        args: list[str | int] = [
            orjson.dumps(attempt).decode(),
            log_size,
            message_id,
            state.encode(),
            outcome,
            repr(due),
            delivery_member(endpoint_id, message_id),
            repr(now),
        ]
        result = await self._call(lambda: self._record(keys=keys, args=args))
        if result == -1:
            raise WebhookEndpointNotFound(endpoint_id)
        failing = float(result)
        return failing or None

    async def give_up(
        self, endpoint_id: str, message_id: str, *, attempts: int, now: float
    ) -> None:
        """Mark a delivery failed without an attempt (its endpoint is disabled)."""
        k = self.keys

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    k.webhook_endpoint_state(endpoint_id),
                    message_id,
                    DeliveryState("failed", attempts).encode(),
                )
                pipe.srem(k.webhook_endpoint_pending(endpoint_id), message_id)
                pipe.zadd(k.webhook_endpoint_failed(endpoint_id), {message_id: now})
                pipe.zrem(k.webhook_scheduled, delivery_member(endpoint_id, message_id))
                await pipe.execute()

        await self._call(write)

    async def attempts(self, endpoint_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        raws = await self._call(
            lambda: self.redis.lrange(self.keys.webhook_endpoint_log(endpoint_id), 0, limit - 1)
        )
        return [orjson.loads(raw) for raw in raws]

    async def backlog(self, endpoint_ids: Sequence[str]) -> dict[str, int]:
        async def read() -> list[int]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for endpoint_id in endpoint_ids:
                    pipe.scard(self.keys.webhook_endpoint_pending(endpoint_id))
                counts: list[int] = await pipe.execute()
            return counts

        return dict(zip(endpoint_ids, await self._call(read), strict=True))

    async def messages_since(self, endpoint_id: str, since: float) -> list[str]:
        key = self.keys.webhook_endpoint_messages(endpoint_id)
        found = await self._call(lambda: self.redis.zrangebyscore(key, since, "+inf"))
        return [str(m) for m in found]

    async def failed_messages(self, endpoint_id: str) -> list[str]:
        key = self.keys.webhook_endpoint_failed(endpoint_id)
        return [str(m) for m in await self._call(lambda: self.redis.zrange(key, 0, -1))]

    async def replay(
        self, endpoint_id: str, message_ids: Sequence[str], *, now: float | None = None
    ) -> int:
        """Deliver these messages to the endpoint again, now; returns how many were still kept."""
        now = time.time() if now is None else now
        k = self.keys
        replayed = 0
        for message_id in message_ids:
            keys = [
                k.webhook_endpoint_state(endpoint_id),
                k.webhook_endpoint_pending(endpoint_id),
                k.webhook_endpoint_failed(endpoint_id),
                k.webhook_scheduled,
                k.webhook_endpoint_messages(endpoint_id),
                k.webhook_message(message_id),
            ]
            args = [message_id, delivery_member(endpoint_id, message_id), repr(now), repr(now)]
            replayed += int(await self._call(self._replay_call(keys, args)))
        return replayed

    def _replay_call(self, keys: list[str], args: list[str]) -> Callable[[], Awaitable[Any]]:
        return lambda: self._replay(keys=keys, args=args)

    async def forget_older_than(self, endpoint_id: str, cutoff: float) -> int:
        """Drop the state of messages older than ``cutoff`` (their bodies have expired)."""
        k = self.keys
        msgs = k.webhook_endpoint_messages(endpoint_id)
        old = await self._call(lambda: self.redis.zrangebyscore(msgs, "-inf", cutoff, 0, 1000))
        if not old:
            return 0

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(msgs, *old)
                pipe.hdel(k.webhook_endpoint_state(endpoint_id), *old)
                pipe.zrem(k.webhook_endpoint_failed(endpoint_id), *old)
                pipe.srem(k.webhook_endpoint_pending(endpoint_id), *old)
                await pipe.execute()

        await self._call(write)
        return len(old)

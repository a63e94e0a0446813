"""The store's base: its Lua scripts, publishing through the sink (BROKER_URL), and the sweeps
that keep records moving (dispatching the schedule, cleaning the indexes, finding stuck ones).

:class:`notifier.storage.store.NotificationStore` adds the record writes on top.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from notifier.messages import DEFAULT_QUEUE
from notifier.storage import scripts as store_scripts
from notifier.storage.keys import PUBLISHING, Keys
from notifier.storage.reads import RecordReader
from notifier.storage.sink import MessageSink

__all__ = ["ScriptedStore", "dumps_json"]

log = logging.getLogger(__name__)

#: With RabbitMQ, seconds after which a due message is published again when its dispatcher
#: never saw the broker's confirm (killed, or stuck on a blocked connection).
REPUBLISH_AFTER = 30.0
#: Seconds before due messages whose publish failed (RabbitMQ down) are tried again: one try
#: (and one warning) a second per dispatcher instead of one per tick.
RETRY_PUBLISH_AFTER = 1.0


def dumps_json(value: Any) -> str:
    return orjson.dumps(value).decode()


class ScriptedStore(RecordReader):
    """Record reads, the store scripts, the message sink and the maintenance sweeps."""

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
        self._dispatch_confirm = redis.register_script(store_scripts.DISPATCH_CONFIRM)
        self._cleanup = redis.register_script(store_scripts.CLEANUP)
        self._create_and_claim = redis.register_script(store_scripts.CREATE_AND_CLAIM)
        self._find_stuck = redis.register_script(store_scripts.FIND_STUCK)

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
            count = len(messages)
            log.warning(
                "publishing %d message(s) to RabbitMQ failed (%s); recovery requeues them",
                count,
                exc,
            )

    async def dispatch_due(self, *, now: float | None = None, limit: int = 500) -> int:
        """Queue the scheduled messages that are due; returns how many were queued.

        On the Redis broker one script moves them onto the queue. With RabbitMQ (a sink) each
        stays on the schedule, due again ``REPUBLISH_AFTER`` seconds on, until RabbitMQ has
        confirmed it: a dispatcher killed between the two loses nothing (a message published
        twice is harmless, the claim lets one delivery send).
        """
        now = time.time() if now is None else now
        due = await self._ids_up_to(self.keys.scheduled, now, offset=0, count=limit)
        if not due:
            return 0
        mode = "return" if self.sink is not None else "push"
        republish_at = repr(now + REPUBLISH_AFTER)
        ids = [member.removeprefix(PUBLISHING) for member in due]
        args = [repr(now), mode, republish_at]
        for member, notification_id in zip(due, ids, strict=True):
            args += [member, notification_id, PUBLISHING + notification_id]
        keys = [*self._script_keys, *map(self.keys.record, ids)]
        reply = await self._call(lambda: self._dispatch(keys=keys, args=args))
        if self.sink is None:
            return int(reply)
        members, messages = [str(m) for m in reply[::2]], list(reply[1::2])
        if not members:
            return 0
        try:
            await self.sink.publish(messages)
        except Exception as exc:
            log.warning("publishing %d due message(s) to RabbitMQ failed: %s", len(members), exc)
            await self._confirm_dispatch(members, republish_at, due_again=now + RETRY_PUBLISH_AFTER)
            return 0
        await self._confirm_dispatch(members, republish_at)
        return len(members)

    async def _confirm_dispatch(
        self, members: list[str], republish_at: str, *, due_again: float | None = None
    ) -> None:
        """Drop the members RabbitMQ confirmed, or (``due_again``) make them due then."""
        outcome = "confirmed" if due_again is None else "failed"
        args = [republish_at, outcome, repr(due_again or 0.0), *members]
        await self._call(lambda: self._dispatch_confirm(keys=self._script_keys, args=args))

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

"""Batch fan-out: deliver a chunk of stored notifications over several SMTP connections at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from notifier.delivery.deliver import DeliveryContext, deliver
from notifier.delivery.outcome import DeliveryOutcome
from notifier.delivery.record import record_budget
from notifier.errors import StoreUnavailable
from notifier.intake import deliver_batch_message
from notifier.settings import Settings

__all__ = ["ChunkOutcome", "chunk_start_budget", "deliver_many"]

log = logging.getLogger(__name__)


def chunk_start_budget(settings: Settings) -> float:
    """Seconds into a ``notifier.deliver_batch`` task during which it may start another send.

    One notification takes at most ``SEND_TIMEOUT`` for SMTP plus the time recording its
    outcome may wait for Redis, so anything started within this budget ends before
    ``TASK_TIME_LIMIT`` (which is shorter than ``BROKER_VISIBILITY_TIMEOUT``): a chunk is never
    killed by its time limit half-way, which would acknowledge its message with ids unsent.
    Defaults: 120 - (60 + 25 + 1) = 34 s. What is left is queued again as a new chunk.
    """
    per_notification = settings.send_timeout + record_budget(settings) + 1.0
    return max(0.0, settings.task_time_limit - per_notification)


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What one ``notifier.deliver_batch`` task did with its ids."""

    outcomes: tuple[DeliveryOutcome, ...]
    #: Ids not started before the chunk's start budget ran out; queued again as a new chunk.
    requeued: tuple[str, ...] = ()


async def deliver_many(
    contexts: Sequence[DeliveryContext],
    notification_ids: Sequence[str],
    *,
    started: float | None = None,
    slots: asyncio.Semaphore | None = None,
) -> ChunkOutcome:
    """Deliver stored notifications, each claimed, sent and recorded on its own.

    Up to ``len(contexts)`` run at once, each over its context's own SMTP connection (the
    transport is not shared), so one's Redis round trips overlap another's SMTP exchange.
    ``slots`` bounds the deliveries of every chunk a process runs at once (the worker passes
    one per process, sized like its SMTP pool): chunks in flight together share it, instead
    of each starting ``len(contexts)`` deliveries that would only queue for the same
    connections while holding a Redis connection each.
    A crash anywhere loses nothing: the chunk's task message is redelivered (late ack) and
    every id is claimed again, so the ones already ``sent`` are skipped. Ids not started
    within :func:`chunk_start_budget` are queued again as a new chunk message.
    Raises StoreUnavailable when Redis failed under any of them (the caller gives the
    message back to the broker).
    """
    if not contexts:
        raise ValueError("deliver_many needs at least one delivery context")
    started = time.monotonic() if started is None else started
    deadline = started + chunk_start_budget(contexts[0].settings)
    idle: asyncio.Queue[DeliveryContext] = asyncio.Queue()
    for ctx in contexts:
        idle.put_nowait(ctx)
    first_wave = len(contexts)
    requeued: list[str] = []

    async def one(position: int, notification_id: str) -> DeliveryOutcome | None:
        ctx = await idle.get()
        try:
            async with slots or contextlib.nullcontext():
                # The first wave always starts, so a chunk makes progress however short the
                # budget.
                if position >= first_wave and time.monotonic() > deadline:
                    requeued.append(notification_id)
                    return None
                return await deliver(ctx, notification_id)
        finally:
            idle.put_nowait(ctx)

    results = await asyncio.gather(
        *(one(position, nid) for position, nid in enumerate(notification_ids)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if isinstance(error, StoreUnavailable | asyncio.CancelledError):
            raise error  # the whole chunk goes back to the broker; nothing to requeue here
    if requeued:
        log.warning(
            "chunk start budget (%.0fs) ran out; %d notification(s) queued again",
            chunk_start_budget(contexts[0].settings),
            len(requeued),
        )
        await contexts[0].store.enqueue(deliver_batch_message(requeued))
    if errors:
        # An unexpected error fails the task (and Celery acknowledges it); the ids not started
        # were queued again above, the others each ran their own delivery.
        raise errors[0]
    outcomes = tuple(r for r in results if isinstance(r, DeliveryOutcome))
    return ChunkOutcome(outcomes=outcomes, requeued=tuple(requeued))

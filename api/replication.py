"""REDIS_WAIT_REPLICAS: answer 202 only once the accepted write reached the replicas."""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import Services
from api.problems import unavailable_response
from notifier.storage.connection import wait_for_replicas
from notifier.storage.keys import Keys

__all__ = ["ReplicaWait"]

log = logging.getLogger(__name__)
#: Seconds between two warnings about replicas that did not acknowledge in time.
WARN_EVERY = 10.0


class ReplicaWait:
    """Holds every 202 answer until ``REDIS_WAIT_REPLICAS`` replicas acknowledged the writes
    made so far, or ``REDIS_WAIT_TIMEOUT_MS`` passed.

    Redis replicates asynchronously: a write the master acknowledged and then lost in a
    crash is gone after the failover. Waiting here closes that window for what the API
    acknowledged, at one more round trip per accepted request. A timeout still answers 202
    (the write is on the master) and logs a warning: availability over durability. A Redis
    error while waiting (the master died) turns the 202 into a 503 the client retries.
    """

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services
        self.replicas = services.settings.redis_wait_replicas
        self.timeout_ms = services.settings.redis_wait_timeout_ms
        self.barrier_key = Keys(services.settings.redis_prefix).replication_barrier()
        self._warned_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return

        replaced = False

        async def send_after_wait(message: Message) -> None:
            nonlocal replaced
            if replaced:  # the app's 202 body: its answer was replaced by a 503
                return
            if message["type"] == "http.response.start" and message["status"] == 202:
                try:
                    await self._wait()
                except RedisError as exc:
                    # The master went away before a replica confirmed: the write may be lost,
                    # so do not promise it. The client's retry (same Idempotency-Key) is safe.
                    replaced = True
                    await unavailable_response(exc)(scope, receive, send)
                    return
            await send(message)

        await self.app(scope, receive, send_after_wait)

    async def _wait(self) -> None:
        redis = self.services.redis
        if redis is None:
            return
        acknowledged = await wait_for_replicas(
            redis, replicas=self.replicas, timeout_ms=self.timeout_ms, barrier_key=self.barrier_key
        )
        if acknowledged < self.replicas and time.monotonic() - self._warned_at > WARN_EVERY:
            self._warned_at = time.monotonic()
            log.warning(
                "accepted writes on %d of REDIS_WAIT_REPLICAS=%d replica(s) after %d ms; "
                "answered 202 anyway, a failover now could lose them",
                acknowledged,
                self.replicas,
                self.timeout_ms,
            )

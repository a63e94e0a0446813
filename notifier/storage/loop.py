"""RedisLoopThread: a daemon thread with its own event loop that ticks against Redis and rides
out outages; the mail dispatcher and the webhook pump are two of them."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import ClassVar

import redis.asyncio as aioredis

from notifier.errors import StoreUnavailable
from notifier.settings import Settings
from notifier.storage.connection import connect_async

__all__ = ["RedisLoopThread"]


class RedisLoopThread:
    """Calls :meth:`tick` every :attr:`interval` seconds until stopped.

    A tick that finds Redis unavailable is logged once, and its recovery once, and the loop
    carries on. Any other exception ends the thread, unless ``survive_errors`` says to log it.
    """

    #: The thread's name, and how log lines name the loop.
    thread_name: ClassVar[str]
    label: ClassVar[str]
    log: ClassVar[logging.Logger]
    survive_errors: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self.settings.scheduler_interval

    async def setup(self, redis: aioredis.Redis) -> None:
        """Build what the ticks use, once the loop's Redis connection exists."""

    async def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        redis = connect_async(self.settings)
        unavailable = False
        try:
            await self.setup(redis)
            while not self._stop.is_set():
                try:
                    await self.tick()
                    if unavailable:
                        self.log.info("%s reconnected to Redis", self.label)
                        unavailable = False
                except StoreUnavailable as exc:
                    if not unavailable:
                        self.log.warning("%s cannot reach Redis: %s", self.label, exc)
                        unavailable = True
                except Exception:
                    if not self.survive_errors:
                        raise
                    # A bug must not stop the loop for the life of the worker; say so loudly.
                    self.log.exception("%s tick failed", self.label)
                await asyncio.sleep(self.interval)
        finally:
            await redis.aclose()

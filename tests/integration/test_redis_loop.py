"""RedisLoopThread (the dispatcher's and the webhook pump's loop) against a real redis-server:
it ticks until stopped, rides out an outage logging it once each way, and either survives or
ends on a bug as its subclass says."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from notifier.settings import load_settings
from notifier.storage.loop import RedisLoopThread
from notifier.storage.redis import map_redis_errors
from tests.support.redis_server import RedisServer

LOG = logging.getLogger("tests.redis_loop")
WAIT = 20.0


class Pinger(RedisLoopThread):
    """Pings Redis each tick; a tick can be told to fail once with a bug."""

    thread_name = "test-pinger"
    label = "pinger"
    log = LOG

    def __init__(self, url: str) -> None:
        super().__init__(load_settings(redis_url=url, scheduler_interval=0.01))
        self.ticks = 0
        self.ticked = threading.Event()
        self.failing = threading.Event()
        self.bug = False

    async def setup(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def tick(self) -> None:
        if self.bug:
            self.bug = False
            raise ValueError("a bug")
        try:
            with map_redis_errors():
                await self.redis.ping()
        except Exception:
            self.failing.set()
            raise
        self.ticks += 1
        self.ticked.set()

    def wait_tick(self) -> None:
        self.ticked.clear()
        assert self.ticked.wait(WAIT), "no successful tick"


def test_ticks_until_stopped(redis_server: RedisServer) -> None:
    loop = Pinger(redis_server.url)
    loop.start()
    loop.wait_tick()
    loop.wait_tick()
    loop.stop()
    assert loop._thread is not None and not loop._thread.is_alive()
    assert loop.ticks >= 2


def test_an_outage_is_logged_once_each_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    loop = Pinger(server.url)
    caplog.set_level(logging.INFO, logger=LOG.name)
    try:
        loop.start()
        loop.wait_tick()
        server.kill()
        assert loop.failing.wait(WAIT)
        loop.failing.clear()
        assert loop.failing.wait(WAIT)  # a second failed tick: still running, not logged again
        server.start()
        loop.wait_tick()
        loop.wait_tick()
    finally:
        loop.stop()
        server.stop()
    messages = [record.getMessage() for record in caplog.records if record.name == LOG.name]
    assert [m for m in messages if "cannot reach Redis" in m] == [
        next(m for m in messages if m.startswith("pinger cannot reach Redis: "))
    ]
    assert messages.count("pinger reconnected to Redis") == 1


# The ending thread's ValueError reaches threading.excepthook, as the dispatcher's would.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_bug_ends_the_loop_unless_it_survives_errors(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ending = Pinger(redis_server.url)
    ending.bug = True
    ending.start()
    assert ending._thread is not None
    ending._thread.join(WAIT)
    assert not ending._thread.is_alive() and ending.ticks == 0

    class Surviving(Pinger):
        survive_errors = True

    surviving = Surviving(redis_server.url)
    surviving.bug = True
    caplog.set_level(logging.INFO, logger=LOG.name)
    try:
        surviving.start()
        surviving.wait_tick()
    finally:
        surviving.stop()
    assert "pinger tick failed" in [r.getMessage() for r in caplog.records]

"""Upgrading across the atomic fetch: a worker on kombu's own Redis transport is stopped (warm
shutdown) with messages still queued, one on notifier's transport takes over, and publishers
that are the original design's ``celery_client.py`` keep working; nothing is lost or doubled."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import FAST_TIMING, NO_LATE_ACCEPT
from tests.reliability.faults import deliveries, duplicates, plain_request, wait_terminal
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO, WorkerProcess, service_env

pytestmark = pytest.mark.slow

#: The worker as it ran before this change: notifier's app on kombu's stock Redis transport.
OLD_APP = '''"""notifier's worker on kombu's own Redis transport (BRPOP, then QoS.append)."""
from notifier.worker.app import app

app.conf.broker_transport = "kombu.transport.redis:Transport"
'''


@pytest.fixture
def old_worker(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        (tmp_path / "old_notifier_app.py").write_text(OLD_APP)
        log_path = tmp_path / "old-worker.log"
        log = log_path.open("ab")
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "old_notifier_app", "worker"),
                *("-l", "info", "-c", "2", "-n", f"old-{uuid.uuid4().hex[:8]}@%h"),
                *("--without-gossip", "--without-mingle"),
            ],
            cwd=REPO,
            env={**env, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        started.append(process)
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes():
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the old worker did not start"
            time.sleep(0.1)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _seed_client(own_redis: RedisServer) -> Any:
    """The original design's publisher module, run as is with only REDIS_URL set."""
    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = own_redis.url
    try:
        return runpy.run_path(str(REPO / "tests" / "seed" / "celery_client.py"))["celery_app"]
    finally:
        if previous is None:
            del os.environ["REDIS_URL"]
        else:
            os.environ["REDIS_URL"] = previous


def _publish(client: Any, count: int, tag: str) -> list[str]:
    ids = []
    for index in range(count):
        task_id = f"{tag}-{index:04d}-{uuid.uuid4().hex[:8]}"
        client.send_task(
            "notifier.send", kwargs=plain_request(f"{tag}-{index}@example.com"), task_id=task_id
        )
        ids.append(task_id)
    return ids


def test_warm_upgrade_from_kombu_transport_loses_nothing(
    own_redis: RedisServer,
    old_worker: Callable[[dict[str, str]], subprocess.Popen[bytes]],
    make_worker: Callable[..., WorkerProcess],
    smtp: RecordingSMTPServer,
) -> None:
    env = service_env(
        redis_url=own_redis.url, smtp_port=smtp.port, extra={**FAST_TIMING, **NO_LATE_ACCEPT}
    )
    client = _seed_client(own_redis)
    # Published before the old worker starts: it takes messages about as fast as one client
    # publishes them, so with the two at once the queue could be empty at the stop.
    ids = _publish(client, 1000, "upgrade-old")
    old = old_worker(env)
    deadline = time.monotonic() + 60
    while len(deliveries(smtp, ids)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    old.send_signal(signal.SIGTERM)  # warm shutdown: running sends finish, the rest go back
    assert old.wait(60) == 0
    probe = own_redis.client()
    try:
        queued = int(probe.llen("celery"))
    finally:
        probe.close()
    assert queued > 0, "the upgrade must happen with messages still queued"

    make_worker(env, concurrency=2)  # notifier's transport
    ids += _publish(client, 100, "upgrade-new")
    records = wait_terminal(own_redis.url, ids, timeout=120)
    counts = deliveries(smtp, ids)
    assert set(counts) == set(ids)
    assert {r.status for r in records.values()} == {"sent"}
    assert duplicates(counts) == 0  # no kill: nothing had its 250 without its record
    client.close()
    print(f"\nupgrade: {queued} still queued at the old worker's stop, all {len(ids)} sent once")

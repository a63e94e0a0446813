"""Several worker hosts on one Redis: three workers with their own node names and working
directories, each running its dispatcher and recovery sweep. Every immediate and every
scheduled notification is sent exactly once: no two dispatchers move the same due
notification, and no recovery sweep requeues one another worker is sending.

Redis-only: this is about several hosts sharing one Redis broker and store.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.reliability.conftest import FAST_TIMING, NO_LATE_ACCEPT
from tests.reliability.faults import deliveries, plain_request, publish_burst, publisher
from tests.support.api_server import ApiServer, api_settings
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

IMMEDIATE = 1000
SCHEDULED = 1000
HOSTS = 3
_QUEUED = re.compile(r"dispatcher queued (\d+) due notification")
_REQUEUED = re.compile(r"requeued (\d+) notification\(s\) whose task message was lost")


@pytest.fixture
def hosts(
    make_redis: Callable[..., RedisServer],
    smtp: RecordingSMTPServer,
    tmp_path: Path,
) -> Iterator[tuple[RedisServer, list[WorkerProcess]]]:
    redis = make_redis()
    # Recovery sweeps every 2 s and presumes a message lost after 3 s without progress:
    # far more eager than production, so the sweeps race the sending workers all along.
    env = service_env(
        redis_url=redis.url,
        smtp_port=smtp.port,
        extra={
            **FAST_TIMING,
            **NO_LATE_ACCEPT,  # three workers and an API on a loaded 2-core runner
            "RECOVERY_AFTER": "3",
            "WORKER_EVENTS": "false",
        },
    )
    workers = []
    for index in range(HOSTS):
        home = tmp_path / f"host{index}"
        home.mkdir()
        worker = WorkerProcess(
            env=env,
            log_path=home / "worker.log",
            concurrency=2,
            name=f"host{index}-{uuid.uuid4().hex[:6]}@%h",
            cwd=home,
        )
        worker.start(timeout=60)
        workers.append(worker)
    yield redis, workers
    for worker in workers:
        worker.kill()


def test_three_hosts_send_every_immediate_and_scheduled_notification_once(
    hosts: tuple[RedisServer, list[WorkerProcess]], smtp: RecordingSMTPServer
) -> None:
    redis, workers = hosts
    tag = uuid.uuid4().hex[:8]
    client = publisher(redis.url)
    api = ApiServer(api_settings(redis.url, max_batch_size=500)).start()
    try:
        send_at = (datetime.now(UTC) + timedelta(seconds=8)).isoformat()
        scheduled: list[str] = []
        with api.client() as http:
            for start in range(0, SCHEDULED, 500):
                batch = [
                    plain_request(f"sched-{tag}-{i}@example.com", send_at=send_at)
                    for i in range(start, min(start + 500, SCHEDULED))
                ]
                response = http.post("/api/v1/notifications/batch", json={"notifications": batch})
                assert response.status_code == 202, response.text[:300]
                results = response.json()["results"]
                assert {r["status"] for r in results} == {"scheduled"}
                scheduled.extend(r["id"] for r in results)
        immediate = publish_burst(client, IMMEDIATE, tag=f"now-{tag}")
    finally:
        api.stop()
        client.close()

    everything = immediate + scheduled
    deadline = time.monotonic() + 240
    counts = deliveries(smtp, everything)
    while len(counts) < len(everything) and time.monotonic() < deadline:
        time.sleep(0.5)
        counts = deliveries(smtp, everything)
    time.sleep(2)  # a late duplicate would show up now
    counts = deliveries(smtp, everything)

    logs = [worker.log_text() for worker in workers]
    moved = [sum(int(n) for n in _QUEUED.findall(log)) for log in logs]
    requeued = [sum(int(n) for n in _REQUEUED.findall(log)) for log in logs]
    sent_by = [log.count(" sent (attempt ") for log in logs]
    print(
        f"\nseveral hosts: {len(counts)} of {len(everything)} sent; dispatchers moved {moved} "
        f"(sum {sum(moved)}), recovery requeued {requeued}, sends per host {sent_by}"
    )
    assert len(counts) == len(everything), f"{len(everything) - len(counts)} never sent"
    assert all(n == 1 for n in counts.values()), {i: n for i, n in counts.items() if n > 1}
    # Each due notification was moved by exactly one dispatcher.
    assert sum(moved) == SCHEDULED
    # Every host took part.
    assert all(n > 0 for n in sent_by)

"""Many batch chunks in flight in one worker process share its delivery slots.

Each ``notifier.deliver_batch`` chunk used to start up to SMTP_CONNECTIONS_PER_PROCESS
deliveries of its own, so 24 chunks in flight ran ~768 at once in one process: more Redis
commands at once than the client's connection pool allows (redis-py's default, 100), and the
chunks failed with "Too many connections" and went back to the broker, again and again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.faults import deliveries, duplicates, wait_terminal
from tests.reliability.test_batch_chunks import notifications, queue_batch
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

CHUNKS, CHUNK_SIZE = 24, 50


@pytest.mark.timeout(240)
def test_chunks_in_flight_together_deliver_without_giving_back(
    redis_server: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    redis_url = redis_server.private_db(9)  # not the session worker's
    # Everything is queued before the worker starts: its first fetches take every chunk.
    ids = queue_batch(redis_url, notifications("slots", CHUNKS * CHUNK_SIZE), chunk_size=CHUNK_SIZE)
    timing: dict[str, Any] = {
        # A chunk start budget of 120 - (10 + 25 + 1) = 84 s: whole chunks run at once.
        "TASK_TIME_LIMIT": "120",
        "BROKER_VISIBILITY_TIMEOUT": "600",
        "SENDS_IN_FLIGHT_PER_PROCESS": "32",
        "SMTP_CONNECTIONS_PER_PROCESS": "32",
    }
    worker = make_worker(
        service_env(redis_url=redis_url, smtp_port=smtp.port, extra=timing), concurrency=1
    )

    records = wait_terminal(redis_url, ids, timeout=180)
    assert {r.status for r in records.values()} == {"sent"}
    counts = deliveries(smtp, ids)
    assert set(counts) == set(ids)
    assert duplicates(counts) == 0
    log = worker.log_text()
    assert "Too many connections" not in log
    assert "giving the task back" not in log

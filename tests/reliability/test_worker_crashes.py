"""A pool process or the whole worker is SIGKILLed mid-burst; every notification still ends sent.

Each test runs on the Redis broker and on RabbitMQ.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest

from tests.reliability.faults import (
    amqp_queue,
    deliveries,
    duplicates,
    publish_burst,
    publisher,
    statuses,
    wait_terminal,
    wait_until,
)
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


def test_pool_process_killed_during_burst(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    worker = make_worker(private_env(redis, broker_url), concurrency=2)
    client = publisher(redis.url, broker_url=broker_url)
    ids = publish_burst(client, 200, tag="poolkill")

    kills = 0
    for threshold in (40, 110):
        wait_until(lambda t=threshold: len(smtp.messages) >= t, timeout=60, what="sending")
        children = worker.child_pids()
        assert children, "the worker has no pool processes"
        os.kill(children[0], signal.SIGKILL)
        kills += 1
        time.sleep(0.5)

    # The killed process's task is given back (acks_late + reject_on_worker_lost); its record
    # is left `sending` under a lease, so the redelivery waits for the lease to run out
    # (SEND_TIMEOUT + 30 s) and then sends it again.
    started = time.monotonic()
    records = wait_terminal(redis.url, ids, timeout=100)
    elapsed = time.monotonic() - started
    counts = deliveries(smtp, ids)
    assert {r.status for r in records.values()} == {"sent"}
    assert set(counts) == set(ids), "every notification reached the SMTP server"
    # A duplicate needs a kill between the server's 250 and the `sent` record: each kill
    # interrupts at most the process's sends in flight (SENDS_IN_FLIGHT_PER_PROCESS, 32).
    dup = duplicates(counts)
    assert dup <= kills * 32
    client.close()
    # The pool replaced the killed processes and the worker lived on.
    assert len(worker.child_pids()) == 2
    retried = sum(1 for r in records.values() if r.attempt_count > 1)
    print(
        f"\npool kill: {kills} kills, {dup} duplicate(s), {retried} claimed twice, "
        f"drained {elapsed:.1f}s after the last kill"
    )


def _unacked(redis: RedisServer) -> dict[str, float]:
    """Messages kombu holds as delivered but not acknowledged: task id -> delivery time."""
    client = redis.client()
    try:
        entries = client.hgetall("unacked")
        delivered = {tag: client.zscore("unacked_index", tag) for tag in entries}
    finally:
        client.close()
    return {
        json.loads(entry)[0]["headers"]["id"]: float(delivered[tag] or 0)
        for tag, entry in entries.items()
    }


def test_whole_worker_killed_with_unacked_messages(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
    broker_url: str | None,
) -> None:
    redis = make_redis()
    # BROKER_VISIBILITY_TIMEOUT=8; each process runs up to 4 tasks at once (prefetch 4 each).
    env = private_env(redis, broker_url, SENDS_IN_FLIGHT_PER_PROCESS="4")
    first = make_worker(env, concurrency=2)
    client = publisher(redis.url, broker_url=broker_url)
    ids = publish_burst(client, 60, tag="wholekill")
    client.close()
    wait_until(lambda: len(smtp.messages) >= 20, timeout=60, what="sending")
    first.kill()  # SIGKILL to the whole process group: no warm shutdown, nothing given back
    killed_at = time.time()
    if broker_url is None:
        unacked = {i: at for i, at in _unacked(redis).items() if i in ids}
        # prefetch 4 per process: the two processes' messages at most (running or reserved)
        # are unsent. The acks of one loop tick leave `unacked` together at its end, so a kill
        # can also find messages there that were acknowledged, their records `sent`.
        now = statuses(redis.url, list(unacked))
        unsent_held = [i for i in unacked if now[i] != "sent"]
        assert unacked and len(unsent_held) <= 2 * 4, (unsent_held, now)
    else:
        # RabbitMQ gives a dead consumer's messages back at once, with no other worker
        # running: every notification not `sent` has its message queued again, and besides
        # those only messages the killed processes held (2 x 4) whose `sent` record was
        # written but not yet acknowledged.
        wait_until(lambda: amqp_queue(broker_url)[1] == 0, timeout=10, what="no consumer left")
        ready, _ = amqp_queue(broker_url)
        unsent = [i for i, status in statuses(redis.url, ids).items() if status != "sent"]
        assert 1 <= len(unsent) <= ready <= len(unsent) + 2 * 4, (len(unsent), ready)
        unacked = {}

    make_worker(env, concurrency=2)
    records = wait_terminal(redis.url, ids, timeout=100)
    counts = deliveries(smtp, ids)
    assert {r.status for r in records.values()} == {"sent"}
    assert set(counts) == set(ids)
    # Only a message whose send had its 250 before the kill but no `sent` record can go out
    # twice: at most one per send in flight in the killed processes (2 x 4).
    dup = duplicates(counts)
    assert dup <= 2 * 4
    # On Redis the unacked ones came back only through the visibility timeout (8 s) on the new
    # worker; one whose record was already `sent` (killed between record and ack) was skipped.
    resent = [i for i in unacked if (records[i].sent_at or 0) > killed_at]
    assert all((records[i].sent_at or 0) >= unacked[i] + 8 for i in resent)
    resent_after = [(records[i].sent_at or 0) - killed_at for i in resent] or [0.0]
    if broker_url is None:
        held = (
            f"{len(unacked)} unacked, {len(resent)} sent again "
            f"{min(resent_after):.1f}-{max(resent_after):.1f}s after the kill"
        )
    else:
        held = f"{ready} back in the queue at once ({len(unsent)} not sent)"
    print(
        f"\nwhole worker kill ({'rabbitmq' if broker_url else 'redis'}): {held}, {dup} duplicate(s)"
    )

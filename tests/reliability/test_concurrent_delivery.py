"""Many sends in flight per process against the latency relay: kill, shutdown, slow, busy relay.

The relay (bench/relay.py, in this process) answers each command a round trip after it arrived
and each message ACCEPT later; it records when each 250 went out, so a duplicate can be traced
to a send whose 250 arrived before a kill. Each test runs on the Redis broker and on RabbitMQ.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from bench.relay import LatencyRelay
from tests.reliability.conftest import FAST_TIMING, broker_env
from tests.reliability.faults import (
    notification_id_of,
    publish_burst,
    publisher,
    wait_terminal,
    wait_until,
)
from tests.support.redis_server import RedisServer
from tests.support.worker import WorkerProcess, service_env

pytestmark = pytest.mark.slow


@pytest.fixture
def relay() -> Iterator[LatencyRelay]:
    server = LatencyRelay(rtt=0.005, accept=0.025)
    server.start()
    yield server
    server.stop()


def relay_env(
    redis: RedisServer, relay: LatencyRelay, broker_url: str | None, **extra: str
) -> dict[str, str]:
    # Webhook requests run inside a task, so they must fit in FAST_TIMING's TASK_TIME_LIMIT.
    timing = {"WEBHOOK_TIMEOUT": "2", **FAST_TIMING, **broker_env(broker_url)}
    return service_env(redis_url=redis.url, smtp_port=relay.port, extra={**timing, **extra})


def relay_deliveries(relay: LatencyRelay, ids: Sequence[str]) -> Counter[str]:
    wanted = set(ids)
    counts: Counter[str] = Counter()
    for message in relay.messages:
        notification_id = notification_id_of(message.message_id)
        if notification_id in wanted:
            counts[notification_id] += 1
    return counts


def first_accepted(relay: LatencyRelay) -> dict[str, float]:
    """When the relay first said 250 to each notification."""
    firsts: dict[str, float] = {}
    for message in relay.messages:
        firsts.setdefault(notification_id_of(message.message_id), message.accepted_at)
    return firsts


def test_pool_process_killed_with_50_sends_in_flight_loses_nothing(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    relay: LatencyRelay,
    broker_url: str | None,
) -> None:
    relay.accept = 1.0  # each send waits a second for its 250: 50 are in flight at once
    redis = make_redis()
    env = relay_env(
        redis,
        relay,
        broker_url,
        SENDS_IN_FLIGHT_PER_PROCESS="50",
        SMTP_CONNECTIONS_PER_PROCESS="50",
    )
    worker = make_worker(env, concurrency=1)
    client = publisher(redis.url, broker_url=broker_url)
    ids = publish_burst(client, 200, tag="inflightkill")
    client.close()

    wait_until(lambda: relay.count >= 20, timeout=60, what="the first messages")
    wait_until(lambda: relay.stats.awaiting_accept >= 45, timeout=30, what="50 sends in flight")
    in_flight = relay.stats.awaiting_accept
    (child,) = worker.child_pids()
    os.kill(child, signal.SIGKILL)
    killed_at = time.time()

    # The killed process's tasks come back (reject on worker lost); their records wait out
    # their sending lease (SEND_TIMEOUT + 30 s) before they are sent again.
    records = wait_terminal(redis.url, ids, timeout=150)
    assert {r.status for r in records.values()} == {"sent"}
    counts = relay_deliveries(relay, ids)
    assert set(counts) == set(ids), "every notification reached the relay"
    duplicated = [i for i, n in counts.items() if n > 1]
    firsts = first_accepted(relay)
    # A duplicate is only a send whose 250 came before the kill and whose `sent` record did
    # not get written: its first copy was accepted before the kill, and once.
    assert all(firsts[i] <= killed_at for i in duplicated), duplicated
    assert all(counts[i] == 2 for i in duplicated)
    assert len(duplicated) <= in_flight
    # The pool lived on: a new process took the killed one's place.
    assert len(worker.child_pids()) == 1
    print(
        f"\n{in_flight} sends in flight at the kill; {len(duplicated)} duplicate(s), each "
        f"accepted by the relay before the kill; {relay.stats.dropped_before_reply} dropped "
        "before their 250"
    )


def test_sigterm_with_200_in_flight_and_1000_queued_delivers_all_once(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    relay: LatencyRelay,
    broker_url: str | None,
) -> None:
    relay.accept = 1.5  # the first 200 are still waiting for their 250 when SIGTERM comes
    redis = make_redis()
    env = relay_env(
        redis,
        relay,
        broker_url,
        SENDS_IN_FLIGHT_PER_PROCESS="100",
        SMTP_CONNECTIONS_PER_PROCESS="100",
        SEND_TIMEOUT="5",
        TASK_TIME_LIMIT="7",
        BROKER_VISIBILITY_TIMEOUT="10",
    )
    first = make_worker(env, concurrency=2)
    client = publisher(redis.url, broker_url=broker_url)
    ids = publish_burst(client, 1200, tag="termflight")
    client.close()

    wait_until(lambda: relay.stats.awaiting_accept >= 180, timeout=60, what="200 in flight")
    in_flight = relay.stats.awaiting_accept
    queued = len(ids) - relay.count - in_flight
    first.terminate(timeout=60)  # SIGTERM: warm shutdown
    log = first.log_text()
    # The sends in flight finished, and every connection was closed with a QUIT.
    assert relay.stats.open == 0
    assert relay.stats.quits == relay.stats.connections
    assert relay.stats.dropped_before_reply == 0
    sent_before_restart = relay.count
    assert sent_before_restart >= in_flight
    assert sent_before_restart < len(ids), "the shutdown came too late to leave work queued"
    assert queued >= 800, f"only {queued} queued at the SIGTERM"

    make_worker(env, concurrency=2)
    records = wait_terminal(redis.url, ids, timeout=120)
    assert {r.status for r in records.values()} == {"sent"}
    counts = relay_deliveries(relay, ids)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, "delivered twice across the restart"
    assert "Traceback" not in log
    print(
        f"\nSIGTERM with {in_flight} in flight and {queued} queued: {sent_before_restart} sent "
        "before the restart, "
        f"{len(ids) - sent_before_restart} after, none twice"
    )


def test_relay_slow_past_send_timeout_retries_without_duplicates(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    relay: LatencyRelay,
    broker_url: str | None,
) -> None:
    relay.accept = 3.0  # past SEND_TIMEOUT (2 s): every send of the burst times out
    redis = make_redis()
    env = relay_env(
        redis,
        relay,
        broker_url,
        SENDS_IN_FLIGHT_PER_PROCESS="50",
        SMTP_CONNECTIONS_PER_PROCESS="50",
        RETRY_MAX_ATTEMPTS="10",
    )
    make_worker(env, concurrency=1)
    client = publisher(redis.url, broker_url=broker_url)
    ids = publish_burst(client, 50, tag="slowrelay")
    client.close()

    wait_until(lambda: relay.stats.awaiting_accept >= 45, timeout=30, what="50 sends in flight")
    wait_until(
        lambda: relay.stats.dropped_before_reply >= 45, timeout=30, what="the sends to time out"
    )
    relay.accept = 0.025  # the relay recovers

    records = wait_terminal(redis.url, ids, timeout=120)
    assert {r.status for r in records.values()} == {"sent"}
    counts = relay_deliveries(relay, ids)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, "a timed-out send was delivered again"
    retried = [r for r in records.values() if r.attempt_count > 1]
    assert len(retried) >= 45
    print(f"\nslow relay: {len(retried)} retried after a timeout, none delivered twice")


def test_relay_answering_421_too_many_connections_delivers_all(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    relay: LatencyRelay,
    broker_url: str | None,
) -> None:
    relay.max_connections = 5  # two processes of 16 connections each would need 32
    redis = make_redis()
    env = relay_env(
        redis,
        relay,
        broker_url,
        SMTP_CONNECTIONS_PER_PROCESS="16",
        SEND_TIMEOUT="4",
        TASK_TIME_LIMIT="6",
        BROKER_VISIBILITY_TIMEOUT="10",
        # 64 sends share the relay's 5 slots: on a loaded machine a send can wait past
        # SEND_TIMEOUT more than once (a transient retry, as designed). The claim under test is
        # that 421s fail nothing, not how many attempts a loaded runner needs.
        RETRY_MAX_ATTEMPTS="10",
    )
    make_worker(env, concurrency=2)
    client = publisher(redis.url, broker_url=broker_url)
    ids = publish_burst(client, 300, tag="busyrelay")
    client.close()

    records = wait_terminal(redis.url, ids, timeout=120)
    statuses = Counter(r.status for r in records.values())
    assert statuses == {"sent": len(ids)}, statuses
    counts = relay_deliveries(relay, ids)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert relay.stats.refused_connections >= 1
    assert relay.stats.peak_open <= 5
    print(
        f"\nrelay limited to 5 connections: {relay.stats.refused_connections} refused with "
        f"421, {relay.stats.connections} opened, all {len(ids)} sent once"
    )


def test_every_path_keeps_many_sends_in_flight_in_one_process(
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    relay: LatencyRelay,
    broker_url: str | None,
) -> None:
    relay.accept = 1.0  # a send waits a second for its 250: in-flight sends are visible
    redis = make_redis()
    env = relay_env(
        redis,
        relay,
        broker_url,
        SENDS_IN_FLIGHT_PER_PROCESS="20",
        SMTP_CONNECTIONS_PER_PROCESS="20",
    )
    make_worker(env, concurrency=1)
    client = publisher(redis.url, broker_url=broker_url)
    login = "https://app.example.com/login"
    paths: dict[str, Callable[[int], Any]] = {
        "notifier.send": lambda i: client.send_task(
            "notifier.send",
            kwargs={"to": [f"send{i}@example.com"], "template": "plain",
                    "context": {"subject": "s", "body": "b"}},
        ),
        "send_email_task": lambda i: client.send_task(
            "send_email_task", args=[f"seed{i}@example.com", "Welcome!", "Thanks!"]
        ),
        "notifier.event": lambda i: client.send_task(
            "notifier.event",
            args=[{"specversion": "1.0", "type": "user.registered", "source": "tests",
                   "id": f"inflight-{i}",
                   "data": {"email": f"event{i}@example.com", "name": f"U{i}",
                            "login_url": login}}],
        ),
    }  # fmt: skip
    try:
        for path, publish in paths.items():
            before = relay.count
            results = [publish(i) for i in range(12)]
            peak = 0

            def in_flight_seen() -> bool:
                nonlocal peak
                peak = max(peak, relay.stats.awaiting_accept)
                return peak >= 10

            wait_until(in_flight_seen, timeout=30, what=f"{path}: 10 sends in flight at once")
            wait_until(lambda b=before: relay.count >= b + 12, timeout=30, what=f"{path} sent")
            if path == "send_email_task":
                # The seed's AsyncResult flow, with the sends running side by side.
                answers = [r.get(timeout=30) for r in results]
                assert all(a["status"] == "success" for a in answers), answers
            print(f"\n{path}: {peak} sends in flight in one process")
    finally:
        client.close()

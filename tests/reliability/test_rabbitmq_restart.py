"""A private RabbitMQ node stopped (gracefully, or killed) mid-burst and started again, with
messages queued and unacknowledged and a worker running: every accepted notification is
delivered, none lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.faults import (
    accept_like_the_api,
    deliveries,
    duplicates,
    publish_burst,
    publisher,
    wait_terminal,
    wait_until,
)
from tests.support.rabbitmq_node import RabbitNode
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow

#: Sends one worker process runs at once: at most this many can have had their 250 when the
#: node went away, so at most this many may go out twice.
IN_FLIGHT = 4
BURST = 50


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RabbitNode]:
    server = RabbitNode(tmp_path / "rabbit")
    server.start()
    yield server
    server.kill()


@pytest.mark.parametrize("hard", [False, True], ids=["graceful-stop", "kill"])
def test_node_restart_mid_burst_loses_nothing(
    hard: bool,
    node: RabbitNode,
    make_redis: Callable[..., RedisServer],
    make_worker: Callable[..., WorkerProcess],
    private_env: Callable[..., dict[str, str]],
    smtp: RecordingSMTPServer,
) -> None:
    redis = make_redis()
    env = private_env(
        redis, node.url, SENDS_IN_FLIGHT_PER_PROCESS=str(IN_FLIGHT), RECOVERY_AFTER="2"
    )
    worker = make_worker(env, concurrency=1)
    # 0.2 s per RCPT (before the 250): the burst outlasts the wait below, so the node goes
    # away with messages queued, some fetched and unacknowledged, and sends in flight.
    smtp.fail(250, stage="rcpt", delay=0.2)
    tag = f"rmqrestart-{uuid.uuid4().hex[:6]}"

    # Accepted as the API does (record written, then published with confirms) ...
    api_ids = [f"{tag}-api-{i:03d}" for i in range(BURST)]
    assert set(asyncio.run(accept_like_the_api(redis.url, api_ids, broker_url=node.url))) == {
        "queued"
    }
    # ... and by a bare Celery publisher: each send_task returns once RabbitMQ confirmed it.
    client = publisher(redis.url, broker_url=node.url)
    client.conf.broker_transport_options = {"confirm_publish": True}
    try:
        celery_ids = publish_burst(client, BURST, tag=f"{tag}-celery")
    finally:
        client.close()
    ids = [*api_ids, *celery_ids]

    wait_until(lambda: len(deliveries(smtp, ids)) >= 10, timeout=30, what="the burst under way")
    if hard:
        node.kill()
    else:
        node.stop()
    pending_at_stop = len(set(ids) - set(deliveries(smtp, ids)))
    # Accepted while the node is down: the record is written, the publish fails, the request
    # still succeeds; the recovery sweep publishes it once the node is back.
    outage_ids = [f"{tag}-outage-{i}" for i in range(2)]
    assert asyncio.run(accept_like_the_api(redis.url, outage_ids, broker_url=node.url)) == [
        "queued",
        "queued",
    ]
    node.start()  # same name, port and data directory: the quorum queue comes back
    ids += outage_ids

    records = wait_terminal(redis.url, ids, timeout=60)
    counts = deliveries(smtp, ids)
    assert {r.status for r in records.values()} == {"sent"}
    assert set(counts) == set(ids), f"never delivered: {sorted(set(ids) - set(counts))[:5]}"
    # A send whose 250 came in while the node was going away could not be acknowledged; its
    # message comes back, finds the record `sending` and, after the lease, may send again.
    doubled = duplicates(counts)
    assert doubled <= IN_FLIGHT, counts.most_common(IN_FLIGHT + 1)
    assert pending_at_stop > 0, "the node went away after the burst had drained"
    assert worker.process is not None and worker.process.poll() is None
    log = worker.log_text()
    assert "Connection to broker lost" in log or "consumer: Cannot connect" in log
    print(
        f"\nrabbitmq {'kill' if hard else 'graceful stop'}: {len(ids)} sent, "
        f"{pending_at_stop} not yet delivered at the stop, {doubled} duplicate(s)"
    )

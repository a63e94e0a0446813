"""Sentinel failover under load: SIGKILL the master mid-burst; the replica is promoted and the
worker and the API follow it without a restart. Nothing acknowledged is lost beyond the
documented window, the writes the replica had not received when the master died: the API
(REDIS_WAIT_REPLICAS=1) answers 202 only once a replica holds the write, so it loses nothing
unless a wait timed out (logged); a message the broker accepted (notifier.send, kombu's
LPUSH) can be lost if the master died before replicating it. Just before the kill the test
waits until the replica holds a marker it wrote, so anything acknowledged before the marker
must survive; losses after it are counted.

Redis-only: this is about Redis's topology (Sentinel failover), not the broker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery

from notifier.settings import load_settings
from notifier.storage.connection import celery_client_config
from tests.reliability.conftest import FAST_TIMING
from tests.support.api_server import ApiServer, api_settings
from tests.support.cli import run_cli
from tests.support.sentinel import PASSWORD_NAMES, SentinelTopology
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BURST = 500
KILL_AFTER = 200
WAIT_TIMEOUT_MS = 250


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    servers = SentinelTopology(tmp_path / "sentinel")
    servers.start()
    yield servers
    servers.stop()


def request(address: str) -> dict[str, object]:
    return {
        "to": [address],
        "template": "plain",
        "context": {"subject": f"failover {address}", "body": "hello"},
    }


def test_master_killed_mid_burst_everything_acknowledged_is_delivered(
    topology: SentinelTopology,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="api.replication")
    env = service_env(redis_url="", smtp_port=smtp.port, extra={**FAST_TIMING, **topology.env()})
    worker = make_worker(env, concurrency=2)
    sentinel_settings = {
        "redis_sentinels": topology.sentinel_setting,
        "redis_sentinel_master": topology.env()["REDIS_SENTINEL_MASTER"],
        "redis_sentinel_password": topology.env()["REDIS_SENTINEL_PASSWORD"],
    }
    api = ApiServer(
        api_settings(
            topology.env()["REDIS_URL"],
            redis_wait_replicas=1,
            redis_wait_timeout_ms=WAIT_TIMEOUT_MS,
            **sentinel_settings,
        )
    ).start()
    publisher = Celery("sentinel-publisher")
    publisher.conf.update(
        task_serializer="json",
        accept_content=["json"],
        **celery_client_config(
            load_settings(redis_url=topology.env()["REDIS_URL"], **sentinel_settings)
        ),
    )

    tag = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    accepted: dict[str, float] = {}  # address -> when it was acknowledged
    refused = {"api": 0, "broker": 0}
    killed: dict[str, float] = {}

    def acknowledge(address: str) -> None:
        with lock:
            accepted[address] = time.monotonic()

    def through_api() -> None:
        with api.client() as http:
            for index in range(BURST // 2):
                address = f"api-{tag}-{index}@example.com"
                while True:  # a client retries a 503 with the same Idempotency-Key
                    try:
                        response = http.post(
                            "/api/v1/notifications",
                            json=request(address),
                            headers={"Idempotency-Key": address},
                        )
                    except httpx.HTTPError:
                        refused["api"] += 1
                        time.sleep(0.1)
                        continue
                    if response.status_code == 202:
                        acknowledge(address)
                        break
                    assert response.status_code == 503, response.text
                    refused["api"] += 1
                    time.sleep(0.1)

    def through_broker() -> None:
        for index in range(BURST // 2):
            address = f"send-{tag}-{index}@example.com"
            while True:  # a publisher retries with the same task id: notifier sends it once
                try:
                    publisher.send_task(
                        "notifier.send", kwargs=request(address), task_id=f"{tag}-send-{index}"
                    )
                except Exception:
                    refused["broker"] += 1
                    time.sleep(0.1)
                    continue
                acknowledge(address)
                break

    def killer() -> None:
        while len(accepted) < KILL_AFTER:
            time.sleep(0.005)
        # Everything acknowledged before the marker is on the replica; the window is what
        # comes after it (milliseconds here, the replication lag in general).
        killed["marked_at"] = topology.replicated_mark()
        killed["port"] = topology.kill_master()
        killed["at"] = time.monotonic()
        # The old master comes back empty and the sentinels make it the new replica, so the
        # API's WAIT is answered again instead of timing out on every request.
        killed["new_port"] = topology.wait_for_failover(int(killed["port"]))
        topology.restart(int(killed["port"]))

    threads = [threading.Thread(target=f) for f in (through_api, through_broker, killer)]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert not any(thread.is_alive() for thread in threads), "the burst did not finish"
        new_port = int(killed["new_port"])
        burst_seconds = time.monotonic() - started

        # Everything acknowledged is delivered, save what fell inside the loss window.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            missing = [a for a in accepted if not smtp.messages_to(a)]
            if not missing:
                break
            time.sleep(0.5)
        lost = [a for a in accepted if not smtp.messages_to(a)]
        duplicates = sum(1 for a in accepted if len(smtp.messages_to(a)) > 1)
        outside = {
            a: round(accepted[a] - killed["marked_at"], 3)
            for a in lost
            if accepted[a] < killed["marked_at"]
        }
        lost_api = [a for a in lost if a.startswith("api-")]
        wait_timeouts = [r for r in caplog.records if "REDIS_WAIT_REPLICAS" in r.getMessage()]

        # The API and the worker follow the new master without a restart.
        with api.client() as http:
            assert http.get("/readyz").status_code == 200
            late = f"late-{tag}@example.com"
            assert http.post("/api/v1/notifications", json=request(late)).status_code == 202
        smtp.wait_for(1, to=late, timeout=60)
        assert worker.process is not None and worker.process.poll() is None
        # The operator CLI finds the new master too, and the worker answers its ping.
        status = run_cli(env, "status")
        assert status.returncode == 0, status.stderr
        assert "1 alive" in status.stdout, status.stdout
    finally:
        api.stop()
        publisher.close()

    assert len(accepted) == BURST
    after_kill = sum(1 for at in accepted.values() if at > killed["at"])
    print(
        f"\nsentinel failover: {BURST} acknowledged ({after_kill} after the kill), "
        f"master {killed['port']} -> {new_port}, burst {burst_seconds:.1f}s, "
        f"refused while failing over: api {refused['api']}, broker {refused['broker']}; "
        f"window {1000 * (killed['at'] - killed['marked_at']):.1f} ms, "
        f"lost inside it: {len(lost)} (api {len(lost_api)}, "
        f"broker {len(lost) - len(lost_api)}), duplicates: {duplicates}, "
        f"WAIT timeouts logged: {len(wait_timeouts)}"
    )
    assert after_kill > 0
    # Seconds before the marker each was acknowledged: these should have survived.
    assert not outside, f"acknowledged before the replicated marker, yet lost: {outside}"
    # A 202 the API answered after a replica confirmed the write survives the failover.
    assert not lost_api or wait_timeouts, f"the API lost {lost_api} without a WAIT timeout"
    assert PASSWORD_NAMES  # the passwords below never reach the worker's log
    log = worker.log_text()
    for secret in PASSWORD_NAMES.values():
        assert secret not in log

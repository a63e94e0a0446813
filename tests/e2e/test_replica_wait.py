"""REDIS_WAIT_REPLICAS: the API's 202 waits for a replica; without one it answers after the
timeout and says so in the log."""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.api_server import ApiServer, api_settings
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer, redis_server_binary

pytestmark = pytest.mark.slow


@pytest.fixture
def master(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "master")
    server.start()
    yield server
    server.kill()


def start_replica(directory: Path, master_port: int) -> tuple[subprocess.Popen[bytes], int]:
    directory.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory),
            "--replicaof", "127.0.0.1", str(master_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)
    client.close()
    return process, port


def post(api: ApiServer) -> int:
    with api.client() as http:
        body = {
            "to": [f"wait-{uuid.uuid4().hex[:8]}@example.com"],
            "template": "plain",
            "context": {"subject": "s", "body": "b"},
        }
        return int(http.post("/api/v1/notifications", json=body).status_code)


def test_202_waits_for_the_replica_and_warns_without_one(
    master: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="api.replication")
    api = ApiServer(
        api_settings(master.url, redis_wait_replicas=1, redis_wait_timeout_ms=2000)
    ).start()
    replica = None
    try:
        # No replica: the write stays on the master; 202 after the timeout, and a warning.
        assert post(api) == 202
        warnings = [r.getMessage() for r in caplog.records if r.name == "api.replication"]
        assert len(warnings) == 1 and "0 of REDIS_WAIT_REPLICAS=1" in warnings[0]

        # With a replica: once the 202 is back, the record is on the replica.
        replica, replica_port = start_replica(tmp_path / "replica", master.port)
        assert post(api) == 202
        with redis.Redis(port=replica_port) as client:
            assert client.zcard("notifier:all") == 2
    finally:
        api.stop()
        if replica is not None:
            replica.kill()
            replica.wait(10)

"""Sentinel and TLS together: servers and sentinels listen only on TLS, replication runs over
TLS, passwords everywhere. Sends before and after a failover reach the worker.

Redis-only: this is about Redis's topology (Sentinel over TLS), not the broker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery

from notifier.settings import load_settings
from notifier.storage.connection import celery_client_config
from tests.reliability.conftest import FAST_TIMING
from tests.support.api_server import ApiServer, api_settings
from tests.support.cli import run_cli
from tests.support.redis_tls import make_certificates
from tests.support.sentinel import PASSWORD_NAMES, SentinelTopology
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    servers = SentinelTopology(tmp_path / "sentinel", certs=make_certificates(tmp_path / "tls"))
    servers.start(timeout=60)
    yield servers
    servers.stop()


def request(address: str) -> dict[str, object]:
    return {"to": [address], "template": "plain", "context": {"subject": "s", "body": "b"}}


def test_api_and_notifier_send_over_sentinel_and_tls_across_a_failover(
    topology: SentinelTopology,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    env = service_env(redis_url="", smtp_port=smtp.port, extra={**FAST_TIMING, **topology.env()})
    worker = make_worker(env, concurrency=1)
    settings = {name.lower(): value for name, value in topology.env().items()}
    redis_url = settings.pop("redis_url")
    api = ApiServer(api_settings(redis_url, **settings)).start()
    publisher = Celery("sentinel-tls-publisher")
    publisher.conf.update(
        task_serializer="json",
        accept_content=["json"],
        **celery_client_config(load_settings(redis_url=redis_url, **settings)),
    )
    tag = uuid.uuid4().hex[:8]
    try:
        with api.client() as http:
            for round_ in ("before", "after"):
                if round_ == "after":
                    old = topology.kill_master()
                    topology.wait_for_failover(old)
                api_address = f"api-{round_}-{tag}@example.com"
                response = http.post("/api/v1/notifications", json=request(api_address))
                while response.status_code == 503:  # it follows the promoted replica by itself
                    time.sleep(0.1)
                    response = http.post("/api/v1/notifications", json=request(api_address))
                assert response.status_code == 202, response.text
                send_address = f"send-{round_}-{tag}@example.com"
                publisher.send_task(
                    "notifier.send", kwargs=request(send_address), task_id=f"{round_}-{tag}"
                )
                smtp.wait_for(1, to=api_address, timeout=60)
                smtp.wait_for(1, to=send_address, timeout=60)
        status = run_cli(env, "status")
        assert status.returncode == 0, status.stderr
    finally:
        api.stop()
        publisher.close()
    assert worker.process is not None and worker.process.poll() is None
    log = worker.log_text() + status.stdout + status.stderr
    assert "sentinel://" in log  # the broker URL is logged, passwords masked
    for secret in PASSWORD_NAMES.values():
        assert secret not in log

"""Redis over TLS with mutual TLS and an ACL user: a full send, a wrong CA refused, no
password in any log line."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.storage.connection import celery_redis_config, sentinel_transport_options
from tests.support.api_server import ApiServer, api_settings
from tests.support.cli import run_cli as cli
from tests.support.cli import run_worker_to_exit
from tests.support.redis_tls import (
    PASSWORD,
    Certificates,
    TLSRedisServer,
    make_ca,
    make_certificates,
)
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[TLSRedisServer]:
    server = TLSRedisServer(tmp_path_factory.mktemp("redis-tls"), certs)
    server.start()
    yield server
    server.kill()


def tls_env(server: TLSRedisServer, smtp_port: int, *, ca: Path | None = None) -> dict[str, str]:
    return service_env(
        redis_url=server.url,
        smtp_port=smtp_port,
        extra={
            "REDIS_TLS_CA_FILE": str(ca or server.certs.ca),
            "REDIS_TLS_CERT_FILE": str(server.certs.client_cert),
            "REDIS_TLS_KEY_FILE": str(server.certs.client_key),
        },
    )


def test_full_send_over_rediss_with_mutual_tls_and_acl_user(
    tls_redis: TLSRedisServer,
    smtp: RecordingSMTPServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    env = tls_env(tls_redis, smtp.port)
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log", concurrency=2)
    worker.start()
    certs = tls_redis.certs
    api = ApiServer(
        api_settings(
            tls_redis.url,
            redis_tls_ca_file=certs.ca,
            redis_tls_cert_file=certs.client_cert,
            redis_tls_key_file=certs.client_key,
        )
    ).start()
    tag = uuid.uuid4().hex[:8]
    try:
        with api.client() as http:
            assert http.get("/readyz").status_code == 200
            response = http.post(
                "/api/v1/notifications",
                json={
                    "to": [f"tls-api-{tag}@example.com"],
                    "template": "plain",
                    "context": {"subject": "over TLS", "body": "hello"},
                },
            )
            assert response.status_code == 202, response.text
            api_id = response.json()["id"]

            # notifier.send through the broker: a publisher built from the same settings.
            from celery import Celery

            publisher = Celery("tls-publisher")
            publisher.conf.update(
                task_serializer="json",
                accept_content=["json"],
                broker_transport_options=sentinel_transport_options(api.settings),
                **celery_redis_config(api.settings),
            )
            task_id = f"tls-send-{tag}"
            publisher.send_task(
                "notifier.send",
                kwargs={
                    "to": [f"tls-send-{tag}@example.com"],
                    "template": "plain",
                    "context": {"subject": "over TLS too", "body": "hello"},
                },
                task_id=task_id,
            )
            publisher.close()

            # Another service's NotifierClient: the TLS options ride in the URL's query.
            from urllib.parse import urlencode

            from notifier.client import NotifierClient

            query = urlencode(
                {
                    "ssl_cert_reqs": "required",
                    "ssl_ca_certs": str(certs.ca),
                    "ssl_certfile": str(certs.client_cert),
                    "ssl_keyfile": str(certs.client_key),
                }
            )
            with NotifierClient(f"{tls_redis.url}?{query}") as client:
                client_id = client.send(
                    f"tls-client-{tag}@example.com",
                    "plain",
                    {"subject": "via NotifierClient", "body": "hello"},
                    id=f"tls-client-{tag}",
                )

            deadline = time.monotonic() + 60
            statuses: dict[str, str] = {}
            while time.monotonic() < deadline:
                for notification_id in (api_id, task_id, client_id):
                    got = http.get(f"/api/v1/notifications/{notification_id}")
                    if got.status_code == 200:
                        statuses[notification_id] = got.json()["status"]
                if set(statuses.values()) == {"sent"} and len(statuses) == 3:
                    break
                time.sleep(0.2)
            assert statuses == {api_id: "sent", task_id: "sent", client_id: "sent"}

        assert len(smtp.messages_to(f"tls-api-{tag}@example.com")) == 1
        assert len(smtp.messages_to(f"tls-send-{tag}@example.com")) == 1
        assert len(smtp.messages_to(f"tls-client-{tag}@example.com")) == 1

        # The operator CLI and the health round trip over the same TLS connection.
        status = cli(env, "status")
        assert status.returncode == 0, status.stderr
        health = cli(env, "health")
        assert health.returncode == 0, health.stderr
        assert "ok" in health.stdout
    finally:
        api.stop()
        worker.terminate()

    logged = worker.log_text() + caplog.text + status.stdout + status.stderr + health.stdout
    assert "rediss://" in worker.log_text()  # the broker URL is logged, with the password masked
    assert PASSWORD not in logged


def test_wrong_ca_is_refused_with_one_line_naming_the_setting(
    tls_redis: TLSRedisServer, smtp: RecordingSMTPServer, tmp_path: Path
) -> None:
    wrong_ca, _ = make_ca(tmp_path / "other", "some-other-ca")
    env = tls_env(tls_redis, smtp.port, ca=wrong_ca)

    result = cli(env, "health")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "REDIS_TLS_CA_FILE" in lines[0] and str(wrong_ca) in lines[0]
    assert "certificate" in lines[0]
    assert PASSWORD not in result.stderr + result.stdout

    # The worker refuses to start instead of retrying a certificate that will never verify.
    worker = run_worker_to_exit(env)
    assert worker.returncode == 2, worker.stdout + worker.stderr
    refusal = [line for line in worker.stderr.splitlines() if "REDIS_TLS_CA_FILE" in line]
    assert len(refusal) == 1 and "cannot start the worker" in refusal[0]
    assert PASSWORD not in worker.stdout + worker.stderr


def test_tls_verify_off_is_refused_in_production(tls_redis: TLSRedisServer) -> None:
    from notifier.errors import ConfigurationError
    from notifier.settings import load_settings

    with pytest.raises(ConfigurationError, match="REDIS_TLS_VERIFY"):
        load_settings(
            notifier_env="production",
            mail_from="Notifier <n@example.com>",
            redis_url=tls_redis.url,
            redis_tls_verify=False,
        )

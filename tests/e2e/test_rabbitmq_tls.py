"""RabbitMQ over TLS (amqps://) with a private CA and client certificates: a worker and the API
deliver, a bare Celery publisher's notifier.send is delivered, and a wrong CA is refused in one
line instead of being retried forever."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery

from notifier.errors import ConfigurationError
from notifier.messages import DEFAULT_QUEUE, SEND_TASK
from notifier.settings import load_settings
from notifier.startup import check_api_config
from notifier.storage.sink import check_broker_config
from tests.reliability.faults import plain_request
from tests.support.api_server import ApiServer, api_settings
from tests.support.cli import run_cli, run_worker_to_exit
from tests.support.rabbitmq_node import RabbitNode
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.redis_tls import Certificates, make_ca, make_certificates
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("amqp-tls"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[RabbitNode]:
    """A private node listening only on amqps://, client certificates required."""
    server = RabbitNode(tmp_path_factory.mktemp("rabbit-tls"), certs=certs)
    server.start()
    yield server
    server.kill()


def tls_settings(node: RabbitNode, *, ca: Path | None = None) -> dict[str, str]:
    assert node.certs is not None
    return {
        "BROKER_URL": node.url,
        "BROKER_TLS_CA_FILE": str(ca or node.certs.ca),
        "BROKER_TLS_CERT_FILE": str(node.certs.client_cert),
        "BROKER_TLS_KEY_FILE": str(node.certs.client_key),
    }


def test_api_and_bare_celery_sends_are_delivered_over_amqps(
    node: RabbitNode,
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    tls = tls_settings(node)
    worker = make_worker(service_env(redis_url=own_redis.url, smtp_port=smtp.port, extra=tls))
    assert f"amqps://guest:**@127.0.0.1:{node.port}" in worker.log_text()
    api = ApiServer(
        api_settings(own_redis.url, **{name.lower(): value for name, value in tls.items()})
    ).start()
    to_api, to_celery = (f"{kind}-{uuid.uuid4().hex[:8]}@example.com" for kind in ("api", "celery"))
    try:
        with api.client() as http:
            response = http.post("/api/v1/notifications", json=plain_request(to_api))
        assert response.status_code == 202, response.text
    finally:
        api.stop()
    api_id = response.json()["id"]

    # Another service's publisher: the broker URL, its TLS options, the quorum queue type.
    client = Celery("amqps_publisher", broker=node.url)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue_type="quorum",
        broker_use_ssl=node.client_ssl(),
    )
    try:
        celery_id = str(client.send_task(SEND_TASK, kwargs=plain_request(to_celery)).id)
    finally:
        client.close()

    smtp.wait_for(1, to=to_api, timeout=30)
    smtp.wait_for(1, to=to_celery, timeout=30)
    assert wait_for_status(own_redis.url, api_id, {"sent"}).status == "sent"
    assert wait_for_status(own_redis.url, celery_id, {"sent"}).status == "sent"
    probe = own_redis.client()
    try:
        assert probe.llen(DEFAULT_QUEUE) == 0  # both travelled over RabbitMQ
    finally:
        probe.close()


def test_wrong_ca_is_refused_in_one_line_naming_the_setting(
    node: RabbitNode, own_redis: RedisServer, smtp: RecordingSMTPServer, tmp_path: Path
) -> None:
    wrong_ca, _ = make_ca(tmp_path / "other", "some-other-ca")
    tls = tls_settings(node, ca=wrong_ca)
    settings = load_settings(
        redis_url=own_redis.url, **{name.lower(): value for name, value in tls.items()}
    )
    with pytest.raises(ConfigurationError) as refused:
        check_broker_config(settings)
    message = str(refused.value)
    assert message.startswith("BROKER_TLS_CA_FILE: the certificate of amqps://guest:***@")
    assert str(wrong_ca) in message and "\n" not in message

    # The worker stops at start with that line instead of retrying a certificate that will
    # never verify (Celery's own broker_connection_retry_on_startup would wait forever).
    env = service_env(redis_url=own_redis.url, smtp_port=smtp.port, extra=tls)
    worker = run_worker_to_exit(env)
    assert worker.returncode == 2, worker.stdout + worker.stderr
    refusal = [line for line in worker.stderr.splitlines() if "BROKER_TLS_CA_FILE" in line]
    assert len(refusal) == 1 and "cannot start the worker" in refusal[0]
    assert str(wrong_ca) in refusal[0]

    # The API refuses to start the same way (it would answer 202 and fail every publish),
    # and `notifier health` names the setting instead of waiting for a worker.
    with pytest.raises(ConfigurationError, match=r"^BROKER_TLS_CA_FILE: "):
        check_api_config(settings, "127.0.0.1")
    health = run_cli(env, "health", "--timeout", "5")
    assert health.returncode != 0
    assert "BROKER_TLS_CA_FILE: the certificate of amqps://" in health.stderr + health.stdout
    assert "Traceback" not in health.stderr


def test_a_missing_client_certificate_is_named(node: RabbitNode, own_redis: RedisServer) -> None:
    assert node.certs is not None
    settings = load_settings(
        redis_url=own_redis.url, broker_url=node.url, broker_tls_ca_file=node.certs.ca
    )
    with pytest.raises(ConfigurationError, match=r"^BROKER_TLS_CERT_FILE / BROKER_TLS_KEY_FILE"):
        check_broker_config(settings)

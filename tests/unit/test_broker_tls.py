"""RabbitMQ over TLS (BROKER_TLS_*): what the settings refuse, and the ssl options the worker's
Celery config and the sink's connection get from them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from notifier.errors import ConfigurationError
from notifier.settings import load_settings
from notifier.storage.sink import AmqpSink, amqp_ssl_options, message_sink
from notifier.worker.app import celery_config

AMQPS = "amqps://notifier:s3cret@rabbit.internal:5671/notifier"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")  # only its existence is checked here
    return path


def test_tls_files_need_an_amqps_broker_url(pem: Path) -> None:
    with pytest.raises(ConfigurationError, match="BROKER_TLS_CA_FILE: only for an amqps://"):
        load_settings(broker_url="amqp://guest:guest@localhost:5672/", broker_tls_ca_file=pem)
    with pytest.raises(ConfigurationError, match="BROKER_TLS_VERIFY: only for an amqps://"):
        load_settings(broker_tls_verify=False)  # the Redis broker: nothing to turn off


def test_missing_file_and_lone_certificate_are_refused(pem: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="BROKER_TLS_CA_FILE: no such file"):
        load_settings(broker_url=AMQPS, broker_tls_ca_file=tmp_path / "absent.pem")
    with pytest.raises(ConfigurationError, match="BROKER_TLS_CERT_FILE and BROKER_TLS_KEY_FILE"):
        load_settings(broker_url=AMQPS, broker_tls_cert_file=pem)


def test_verification_off_is_refused_in_production() -> None:
    with pytest.raises(ConfigurationError, match="BROKER_TLS_VERIFY=false is refused"):
        load_settings(
            notifier_env="production",
            mail_from="Notifier <n@example.com>",
            broker_url=AMQPS,
            broker_tls_verify=False,
        )


def test_amqps_verifies_certificate_and_host_against_the_given_files(pem: Path) -> None:
    settings = load_settings(
        broker_url=AMQPS, broker_tls_ca_file=pem, broker_tls_cert_file=pem, broker_tls_key_file=pem
    )
    expected = {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": None,  # kombu puts the URL's host here: the name is checked
        "ca_certs": str(pem),
        "certfile": str(pem),
        "keyfile": str(pem),
    }
    assert amqp_ssl_options(settings) == expected
    assert celery_config(settings)["broker_use_ssl"] == expected
    sink = message_sink(settings)
    assert isinstance(sink, AmqpSink) and sink.ssl == expected
    sink.close()


def test_amqps_without_files_uses_the_system_cas_and_verification_can_be_turned_off() -> None:
    assert amqp_ssl_options(load_settings(broker_url=AMQPS)) == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": None,
    }
    unverified = load_settings(broker_url=AMQPS, broker_tls_verify=False)
    assert amqp_ssl_options(unverified) == {"cert_reqs": ssl.CERT_NONE}


def test_plain_amqp_and_redis_get_no_broker_ssl() -> None:
    assert amqp_ssl_options(load_settings(broker_url="amqp://guest:guest@localhost:5672/")) is None
    plain = celery_config(load_settings(broker_url="amqp://guest:guest@localhost:5672/"))
    assert plain["broker_use_ssl"] is None

"""The Redis connection factory's pure parts: URLs, TLS options, Sentinel config, settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import redis

from notifier.errors import ConfigurationError
from notifier.settings import load_settings
from notifier.storage.connection import (
    broker_url,
    celery_client_config,
    describe_redis_error,
    is_configuration_error,
    redact_url,
    tls_options,
)


def test_redact_url_masks_only_the_password() -> None:
    assert redact_url("rediss://app:s3cret@h:6380/2") == "rediss://app:***@h:6380/2"
    assert redact_url("redis://:s3cret@h/0") == "redis://:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_tls_options_only_for_rediss(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    plain = load_settings(redis_url="redis://h/0", redis_tls_ca_file=ca)
    assert tls_options(plain) == {}
    secure = load_settings(redis_url="rediss://h/0", redis_tls_ca_file=ca)
    assert tls_options(secure) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        "ssl_ca_certs": str(ca),
    }
    config = celery_client_config(secure)
    assert config["broker_use_ssl"]["ssl_ca_certs"] == str(ca)
    assert config["redis_backend_use_ssl"] == config["broker_use_ssl"]


def test_sentinel_urls_and_transport_options() -> None:
    settings = load_settings(
        redis_url="redis://:pw@ignored/3",
        redis_sentinels="10.0.0.1:26379, 10.0.0.2:26380",
        redis_sentinel_master="main",
        redis_sentinel_password="spw",
    )
    assert settings.sentinel_addresses == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert broker_url(settings) == "sentinel://:pw@10.0.0.1:26379/3;sentinel://:pw@10.0.0.2:26380/3"
    config = celery_client_config(settings)
    options = config["broker_transport_options"]
    assert options["master_name"] == "main"
    assert options["sentinel_kwargs"]["password"] == "spw"
    assert config["result_backend"] == config["broker_url"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"redis_sentinels": "h:1"}, "REDIS_SENTINEL_MASTER"),
        ({"redis_sentinels": "no-port", "redis_sentinel_master": "m"}, "host:port"),
        ({"redis_url": "http://h/0"}, "REDIS_URL"),
        ({"redis_tls_ca_file": "/nonexistent/ca.pem"}, "REDIS_TLS_CA_FILE"),
        (
            {
                "notifier_env": "production",
                "mail_from": "N <n@example.com>",
                "redis_tls_verify": False,
            },
            "REDIS_TLS_VERIFY",
        ),
    ],
)
def test_bad_redis_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**overrides)


def test_errors_name_the_setting_and_never_the_password(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = load_settings(redis_url="rediss://u:pa%24%24@h:6380/0", redis_tls_ca_file=ca)
    error = redis.ConnectionError(
        "Error 1 connecting to h:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    line = describe_redis_error(error, settings)
    assert line.startswith("REDIS_TLS_CA_FILE: ") and str(ca) in line
    assert "pa$$" not in line and "pa%24%24" not in line and "\n" not in line
    assert is_configuration_error(error)
    refused = describe_redis_error(redis.AuthenticationError("WRONGPASS invalid"), settings)
    assert refused.startswith("REDIS_URL: ") and "refused" in refused
    down = redis.ConnectionError("Error 111 connecting to h:6380. Connection refused.")
    assert not is_configuration_error(down)
    assert describe_redis_error(down, settings).startswith("REDIS_URL: ")

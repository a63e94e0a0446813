"""Issue 14 (hardening): the pure parts, tested without servers."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from notifier.compose.addresses import check_custom_headers
from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import parse_request, validate_notification
from notifier.errors import ConfigurationError, InvalidNotification
from notifier.observability.logs import RedactionFilter, build_handler, mask_addresses
from notifier.settings import load_settings
from tests.support.ports import free_port
from tests.support.worker import REPO


@pytest.mark.parametrize(
    "name", ["X-SMTPAPI", "x-smtpapi", "X-Mailgun-Variables", "X-SES-CONFIGURATION-SET", "X-PM-Tag"]
)
def test_relay_control_headers_are_refused(name: str) -> None:
    with pytest.raises(InvalidNotification) as caught:
        check_custom_headers({name: '{"to": ["hidden@example.com"]}'})
    assert caught.value.field == f"headers.{name}"


def test_ordinary_custom_headers_pass() -> None:
    assert check_custom_headers({"X-Campaign": "spring"}) == {"X-Campaign": "spring"}


PRODUCTION = {"notifier_env": "production", "mail_from": "ops@example.org", "api_keys": "k"}


@pytest.mark.parametrize("security", ["none"])
def test_production_refuses_clear_text_smtp_auth(security: str) -> None:
    with pytest.raises(ConfigurationError, match="SMTP_SECURITY=none with SMTP_USERNAME"):
        load_settings(
            **PRODUCTION,
            smtp_host="smtp.example.org",
            smtp_security=security,
            smtp_username="user",
            smtp_password="pw",
        )
    # Toward this machine nothing crosses a network; without credentials nothing leaks.
    load_settings(**PRODUCTION, smtp_host="127.0.0.1", smtp_username="u", smtp_password="p")
    load_settings(**PRODUCTION, smtp_host="smtp.example.org")


def test_production_refuses_unvalidated_smtp_certificates() -> None:
    with pytest.raises(ConfigurationError, match="SMTP_VALIDATE_CERTS=false"):
        load_settings(**PRODUCTION, smtp_security="tls", smtp_validate_certs=False)
    load_settings(smtp_security="tls", smtp_validate_certs=False)  # development: allowed


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("иван@пример.рф", "и***@пример.рф"),
        ("иван@xn--e1afmkfd.xn--p1ai", "и***@xn--e1afmkfd.xn--p1ai"),
        ("josé@bücher.example", "j***@bücher.example"),
    ],
)
def test_unicode_and_idn_addresses_are_masked_in_logs(address: str, masked: str) -> None:
    text = mask_addresses(f"sending to {address} now")
    assert address not in text and masked in text


def redacted(record: logging.LogRecord, **options: Any) -> str:
    RedactionFilter(**options).filter(record)
    return record.getMessage() + (record.exc_text or "")


def test_celerys_pool_debug_line_loses_the_task_arguments() -> None:
    # The line celery.concurrency.base logs at DEBUG for every task it starts.
    record = logging.LogRecord(
        "celery.pool",
        logging.DEBUG,
        __file__,
        1,
        "TaskPool: Apply %s (args:%s kwargs:%s)",
        ("<function fast_trace_task>", "('notifier.send', 'id', {'body': 'Dear Ada, secret'})", {}),
        None,
    )
    text = redacted(record)
    assert "fast_trace_task" in text and "Dear Ada" not in text


def test_the_redis_password_is_redacted_from_logs() -> None:
    settings = load_settings(redis_url="redis://:pa(ss)word@redis.internal:6379/0")
    handler = build_handler(settings, stream=io.StringIO())
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "cannot reach %s", (settings.redis_url,), None
    )
    assert handler.filter(record)
    assert "pa(ss)" not in handler.format(record)


def test_notifier_health_does_not_print_the_redis_password() -> None:
    env = {**os.environ, "REDIS_URL": f"redis://:pw-7f3a9c@127.0.0.1:{free_port()}/0"}
    result = subprocess.run(
        [sys.executable, "-m", "notifier.cli", "health", "--timeout", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "pw-7f3a9c" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def attachment(filename: str, content_type: str = "application/pdf") -> dict[str, str]:
    return {"filename": filename, "content_type": content_type, "content": "aGVsbG8="}


RAW = {"to": "ada@example.com", "subject": "s", "text": "t"}


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ada\\report.pdf", "report.pdf"),
        ("a.pdf", "a.pdf"),
    ],
)
def test_attachment_filenames_lose_their_path(given: str, kept: str) -> None:
    request = parse_request({**RAW, "attachments": [attachment(given)]})
    assert request.attachments[0].filename == kept


def test_an_attachment_filename_that_is_only_a_path_is_refused() -> None:
    with pytest.raises(InvalidNotification) as caught:
        parse_request({**RAW, "attachments": [attachment("../")]})
    assert caught.value.field == "attachments[0].filename"


def test_attachment_content_types_can_be_restricted() -> None:
    settings = load_settings(attachment_content_types="application/pdf, image/*")
    renderer = TemplateRenderer(REPO / "templates")
    allowed = [attachment("a.pdf"), attachment("b.png", "image/png")]
    validate_notification(
        parse_request({**RAW, "attachments": allowed}), settings=settings, renderer=renderer
    )
    refused = parse_request(
        {**RAW, "attachments": [*allowed, attachment("x.exe", "application/x-msdownload")]}
    )
    with pytest.raises(InvalidNotification) as caught:
        validate_notification(refused, settings=settings, renderer=renderer)
    assert caught.value.field == "attachments[2].content_type"


# Known vulnerabilities below these: Jinja2 sandbox escapes (CVE-2024-56326, CVE-2025-27516),
# aiosmtpd SMTP smuggling (CVE-2024-27305), h11 request smuggling (CVE-2025-43859).
VERSION_FLOORS = {
    "jinja2": "3.1.6",
    "aiosmtplib": "5.1.2",
    "aiosmtpd": "1.4.6",
    "h11": "0.16",
    "orjson": "3.9.15",
}


@pytest.mark.parametrize(("name", "floor"), sorted(VERSION_FLOORS.items()))
def test_dependency_floors_exclude_vulnerable_versions(name: str, floor: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    [requirement] = [r for r in requirements if canonicalize_name(r.name) == name]
    minimums = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert minimums and min(minimums) >= Version(floor), requirement
    assert Version(metadata.version(name)) >= Version(floor)


def test_docker_compose_publishes_ports_on_loopback_only() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    published = [
        (name, str(port))
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]
    assert published
    assert [p for p in published if not p[1].startswith("127.0.0.1:")] == []


def test_without_smtputf8_a_non_ascii_local_part_is_refused_at_intake() -> None:
    renderer = TemplateRenderer(REPO / "templates")
    request = parse_request({**RAW, "to": ["ada@example.com", "иван@пример.рф"]})
    validate_notification(request, settings=load_settings(), renderer=renderer)
    with pytest.raises(InvalidNotification, match="SMTPUTF8") as caught:
        validate_notification(request, settings=load_settings(smtp_utf8=False), renderer=renderer)
    assert caught.value.field == "to[1]"
    # An internationalized domain alone needs no SMTPUTF8: it is sent IDNA-encoded.
    idn = parse_request({**RAW, "to": "ada@bücher.example"})
    validate_notification(idn, settings=load_settings(smtp_utf8=False), renderer=renderer)

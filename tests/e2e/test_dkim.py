"""DKIM end to end: a real worker signs what it sends (RSA and Ed25519, RFC 8463 dual signing),
the bytes the SMTP server received verify with dkimpy, an altered copy does not, and a worker
with a missing or unusable key refuses to start, naming the setting.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from celery import Celery

from notifier.delivery.dkim import generate_key, parse_private_key
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

DOMAIN = "mail.example.com"


def dnsfunc_for(records: dict[str, str]) -> Callable[..., bytes | None]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value is not None else None

    return dnsfunc


def passes(data: bytes, index: int, dnsfunc: Callable[..., bytes | None]) -> bool:
    """Whether signature ``index`` verifies; dkimpy raises for some failures, returns False for
    others."""
    try:
        return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


def test_worker_dual_signs_with_rsa_and_ed25519(
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    rsa_pem, ed_pem = generate_key("rsa"), generate_key("ed25519")
    key_file = tmp_path / "ed25519.pem"
    key_file.write_bytes(ed_pem)
    env = service_env(
        redis_url=own_redis.url,
        smtp_port=smtp.port,
        extra={
            "DKIM_DOMAIN": DOMAIN,
            "DKIM_SELECTOR": "rsa1",
            # As an environment variable usually carries it: one line with literal \n.
            "DKIM_PRIVATE_KEY": rsa_pem.decode().replace("\n", "\\n"),
            "DKIM_SECONDARY_SELECTOR": "ed1",
            "DKIM_SECONDARY_PRIVATE_KEY_FILE": str(key_file),
        },
    )
    make_worker(env)
    rsa_key = parse_private_key(rsa_pem, selector="rsa1", domain=DOMAIN, setting="t")
    ed_key = parse_private_key(ed_pem, selector="ed1", domain=DOMAIN, setting="t")
    records = {rsa_key.dns_name: rsa_key.dns_record, ed_key.dns_name: ed_key.dns_record}

    to = f"dkim-{uuid.uuid4().hex[:8]}@example.org"
    client = Celery("dkim_test", broker=own_redis.url)
    try:
        notification_id = client.send_task(
            "notifier.send",
            kwargs={
                "to": to,
                "template": "welcome",
                "locale": "ru",
                "context": {"name": "Анна", "login_url": "https://example.com/login"},
            },
        ).id
    finally:
        client.close()
    [received] = smtp.wait_for(1, to=to)
    wait_for_status(own_redis.url, str(notification_id), {"sent"})
    data = received.data

    signatures = [
        value for name, value in dkim.DKIM(data).headers if name.lower() == b"dkim-signature"
    ]
    assert len(signatures) == 2
    assert b"a=rsa-sha256" in signatures[0] and b"s=rsa1" in signatures[0]
    assert b"a=ed25519-sha256" in signatures[1] and b"s=ed1" in signatures[1]
    dnsfunc = dnsfunc_for(records)
    # dkim.verify checks the first (topmost) signature; DKIM.verify(idx=) each one.
    assert dkim.verify(data, dnsfunc=dnsfunc)
    assert passes(data, 0, dnsfunc) and passes(data, 1, dnsfunc)
    # Each signature stands on its own key: without the Ed25519 record only RSA passes.
    only_rsa = dnsfunc_for({rsa_key.dns_name: rsa_key.dns_record})
    assert passes(data, 0, only_rsa) and not passes(data, 1, only_rsa)

    # Altered after signing: a changed subject, or one changed body byte, fails both.
    subject_line = next(line for line in data.split(b"\r\n") if line.startswith(b"Subject:"))
    tampered_header = data.replace(subject_line, b"Subject: =?utf-8?b?0J/RgNC40LI=?=", 1)
    body_at = data.index(b"\r\n\r\n") + 4
    tampered_body = data[:body_at] + data[body_at:].replace(b"=", b"A", 1)
    for tampered in (tampered_header, tampered_body):
        assert tampered != data
        assert not passes(tampered, 0, dnsfunc) and not passes(tampered, 1, dnsfunc)
        assert not dkim.verify(tampered, dnsfunc=dnsfunc)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"DKIM_PRIVATE_KEY": "not a key"}, "DKIM_PRIVATE_KEY"),
        ({"DKIM_PRIVATE_KEY_FILE": "/nonexistent/dkim.pem"}, "DKIM_PRIVATE_KEY_FILE"),
        ({}, "DKIM_PRIVATE_KEY"),
        (
            {
                "DKIM_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            },
            "DKIM_PRIVATE_KEY",
        ),
    ],
    ids=["garbage", "missing-file", "no-key", "broken-pem"],
)
def test_worker_refuses_a_missing_or_invalid_key(
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    tmp_path: Path,
    extra: dict[str, str],
    named: str,
) -> None:
    env = service_env(
        redis_url=own_redis.url,
        smtp_port=smtp.port,
        extra={"DKIM_DOMAIN": DOMAIN, "DKIM_SELECTOR": "s1", **extra},
    )
    process = WorkerProcess(env=env, log_path=tmp_path / "worker.log")
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            process.start()
    finally:
        process.kill()
    assert process.process is not None and process.process.returncode not in (0, None)
    log = process.log_text()
    assert named in log
    assert "Traceback" not in log
    assert "not a key" not in log  # the key's value is never echoed

"""A real MTA writes the DSN: Debian's Postfix, started with its own config directory, relays to
a test SMTP server that refuses the recipient with 550 and returns its bounce to the VERP
address, which it routes to the bounce receiver. The receiver applies it like any DSN.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from notifier.bounces.verp import bounce_address
from notifier.settings import Settings, load_settings
from tests.integration.test_bounces_receiver import entry, feedback, make_record
from tests.support import postfix
from tests.support.bounce_receiver import BounceReceiver
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer

DOMAIN = "bounces.example.com"


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return load_settings(
        redis_url=redis_server.url,
        redis_prefix=f"pf{uuid.uuid4().hex[:8]}",
        bounce_domain=DOMAIN,
        secret_key="postfix-test-secret",
    )


@pytest.fixture
def receiver(settings: Settings) -> Iterator[BounceReceiver]:
    server = BounceReceiver(settings).start()
    yield server
    server.stop()


def wait_for(what: str, check: Any, *, timeout: float, log: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}; postfix log:\n{log()[-4000:]}")
        time.sleep(0.2)


def test_postfix_dsn_for_a_550_reaches_the_record_and_the_list(
    settings: Settings, receiver: BounceReceiver, smtp: RecordingSMTPServer
) -> None:
    problem = postfix.available()
    if problem is not None and "not installed" in problem:
        pytest.fail(problem)
    if problem is not None:
        pytest.skip(problem)
    recipient = f"nobody-{uuid.uuid4().hex[:6]}@example.net"
    smtp.fail(550, stage="rcpt", recipients=[recipient])
    notification_id, message_id = make_record(settings, recipient)
    sender = bounce_address(
        notification_id, recipient, domain=DOMAIN, secret=settings.signing_secret
    )
    message = EmailMessage()
    message["From"] = "Notifier <notifier@example.com>"
    message["To"] = recipient
    message["Subject"] = "Welcome"
    message["Message-ID"] = message_id
    message.set_content("Hello")

    with postfix.PostfixInstance(routes={"example.net": smtp.port, DOMAIN: receiver.port}) as mta:
        with smtplib.SMTP("127.0.0.1", mta.port, timeout=20) as client:
            client.send_message(message, from_addr=sender, to_addrs=[recipient])
        events = wait_for(
            "Postfix's DSN did not reach the record",
            lambda: feedback(settings, notification_id),
            timeout=60,
            log=mta.log,
        )
        log = mta.log()
    assert "status=bounced" in log, log[-3000:]
    (event,) = events
    assert event["type"] == "bounced" and event["recipient"] == recipient
    assert event["status"] == "5.0.0"
    assert "550" in event["diagnostic"]
    suppressed = entry(settings, recipient)
    assert suppressed is not None
    assert (suppressed.reason, suppressed.source) == ("hard_bounce", "dsn")
    assert smtp.rejected and smtp.rejected[-1][0] == recipient

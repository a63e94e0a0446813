"""The bounce receiver over real SMTP (aiosmtpd) against a real redis-server.

DSNs and ARF reports addressed to a VERP address are applied to the record and the
suppression list; replays change nothing; unreadable mail is kept and listed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from notifier.bounces.verp import bounce_address
from notifier.compose.mime import make_message_id
from notifier.settings import Settings, load_settings
from notifier.storage.connection import connect_async
from notifier.storage.store import NotificationStore
from notifier.storage.suppressions import SuppressionStore
from tests.support import bounce_mail
from tests.support.bounce_receiver import BounceReceiver
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

DOMAIN = "bounces.example.com"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def with_stores(settings: Settings, operation: Any) -> Any:
    redis = connect_async(settings)
    try:
        store = NotificationStore(redis, prefix=settings.redis_prefix)
        return await operation(store, SuppressionStore(redis, prefix=settings.redis_prefix))
    finally:
        await redis.aclose()


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return load_settings(
        redis_url=redis_server.url,
        redis_prefix=f"t{uuid.uuid4().hex[:8]}",
        bounce_domain=DOMAIN,
        secret_key="integration-test-secret",
        soft_bounce_limit=3,
        bounce_unclassified_max=3,
    )


@pytest.fixture
def receiver(settings: Settings) -> Iterator[BounceReceiver]:
    server = BounceReceiver(settings).start()
    yield server
    server.stop()


def make_record(settings: Settings, recipient: str) -> tuple[str, str]:
    """A sent notification's record; returns its id and Message-ID."""
    notification_id = str(uuid.uuid4())
    message_id = make_message_id(notification_id, "example.com")

    async def write(store: NotificationStore, _: SuppressionStore) -> None:
        await store.accept(
            notification_id=notification_id,
            fields={
                "to": orjson.dumps([f"Someone <{recipient}>"]).decode(),
                "message_id": message_id,
                "template": "welcome",
            },
            message=None,
        )

    run(with_stores(settings, write))
    return notification_id, message_id


def verp(settings: Settings, notification_id: str, recipient: str | None) -> str:
    return bounce_address(notification_id, recipient, domain=DOMAIN, secret=settings.signing_secret)


def feedback(settings: Settings, notification_id: str) -> list[dict[str, Any]]:
    return run(  # type: ignore[no-any-return]
        with_stores(settings, lambda _, s: s.feedback(notification_id))
    )


def entry(settings: Settings, address: str) -> Any:
    return run(with_stores(settings, lambda _, s: s.get(address)))


def test_dsn_to_a_verp_address_marks_the_record_and_suppresses(
    settings: Settings, receiver: BounceReceiver
) -> None:
    notification_id, message_id = make_record(settings, "Gone@Example.NET")
    to = verp(settings, notification_id, "Gone@example.net")
    raw = bounce_mail.postfix_dsn("gone@example.net", message_id=message_id, to=to)

    code, reply = receiver.send(raw, to=to)
    assert code == 250, reply

    events = feedback(settings, notification_id)
    assert [(e["type"], e["recipient"], e["status"]) for e in events] == [
        ("bounced", "Gone@example.net", "5.1.1")
    ]
    # The token names the recipient notifier sent to; the DSN's case of the local part differed.
    found = entry(settings, "Gone@example.net")
    assert found is not None and found.reason == "hard_bounce" and found.source == "dsn"
    assert entry(settings, "Gone@EXAMPLE.net") is not None  # domain compared without case
    assert entry(settings, "gone@example.net") is None  # local part compared exactly

    # The same DSN again (an MTA retrying after a lost 250) changes nothing.
    assert receiver.send(raw, to=to)[0] == 250
    assert len(feedback(settings, notification_id)) == 1


def test_arf_complaint_found_through_the_returned_return_path(
    settings: Settings, receiver: BounceReceiver
) -> None:
    notification_id, message_id = make_record(settings, "ada@example.org")
    raw = bounce_mail.arf_report(
        "ada@example.org",
        to=f"fbl@{DOMAIN}",
        return_path=verp(settings, notification_id, "ada@example.org"),
        message_id=message_id,
    )
    assert receiver.send(raw, to=f"fbl@{DOMAIN}")[0] == 250
    assert [e["type"] for e in feedback(settings, notification_id)] == ["complained"]
    assert entry(settings, "ada@example.org").reason == "complaint"


def test_soft_bounces_suppress_at_the_limit(settings: Settings, receiver: BounceReceiver) -> None:
    notification_id, _message_id = make_record(settings, "full@example.net")
    to = verp(settings, notification_id, "full@example.net")
    for number in range(1, 4):
        raw = bounce_mail.postfix_dsn(
            "full@example.net", status="4.2.2", to=to, dsn_id=f"<soft-{number}@mta>"
        )
        assert receiver.send(raw, to=to)[0] == 250
        suppressed = entry(settings, "full@example.net")
        assert (suppressed is not None) == (number == 3), number
    assert [e["type"] for e in feedback(settings, notification_id)] == ["soft_bounced"] * 3


def test_unreadable_and_unsigned_mail_is_kept_and_listed(
    settings: Settings, receiver: BounceReceiver
) -> None:
    garbage = b"\x00\xff not a message \r\n\r\n\x80\x81"
    assert receiver.send(garbage, to=f"bounces@{DOMAIN}")[0] == 250
    # A well-formed DSN without a valid token is not applied: it could be forged.
    forged = bounce_mail.postfix_dsn("victim@example.com", to=f"bounces+forged@{DOMAIN}")
    assert receiver.send(forged, to=f"bounces+forged@{DOMAIN}")[0] == 250
    assert entry(settings, "victim@example.com") is None
    # Mail for another domain is refused at RCPT.
    code, _ = receiver.send(garbage, to="someone@elsewhere.example")
    assert code == 550

    kept = run(with_stores(settings, lambda _, s: s.unclassified()))
    assert [k.problem.split(":")[0] for k in kept][:1] == [
        "a dsn report not addressed to a valid VERP address"
    ]
    assert len(kept) == 2 and "not a message" in kept[1].raw
    one = run(with_stores(settings, lambda _, s: s.unclassified_one(kept[1].id)))
    assert one is not None and one.rcpt_to == (f"bounces@{DOMAIN}",)

    # Bounded: the oldest go once BOUNCE_UNCLASSIFIED_MAX (3) are kept; the receiver lives on.
    for _ in range(3):
        assert (
            receiver.send(bounce_mail.out_of_office(to=f"x@{DOMAIN}"), to=f"x@{DOMAIN}")[0] == 250
        )
    kept = run(with_stores(settings, lambda _, s: s.unclassified(limit=10)))
    assert len(kept) == 3 and all(k.mail_from == "" for k in kept)


def test_redis_down_answers_451_so_the_mta_keeps_the_report() -> None:
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", bounce_domain=DOMAIN, secret_key="s"
    )
    server = BounceReceiver(settings).start()
    try:
        code, reply = server.send(bounce_mail.postfix_dsn("a@example.net"), to=f"b@{DOMAIN}")
        assert code == 451, reply
        # Still serving: the next one gets the same answer, not a dead socket.
        assert server.send(b"garbage", to=f"b@{DOMAIN}")[0] == 451
    finally:
        server.stop()

"""The dev inbox shows a message's DKIM result against the configured key and its
List-Unsubscribe links, and its button makes the one-click POST to the real API."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notifier.compose.addresses import parse_address
from notifier.compose.mime import build_email
from notifier.delivery.dkim import DkimSigner, generate_key, parse_private_key
from notifier.devinbox import DevInbox
from notifier.storage.connection import connect_async
from notifier.storage.suppressions import SuppressionEntry, SuppressionStore
from notifier.unsubscribe.tokens import unsubscribe_uris
from tests.support.api_server import ApiServer, api_settings
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

DOMAIN = "mail.example.com"
SECRET = "devinbox-deliverability-secret-0123456789"


@pytest.fixture
def api(redis_server: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_settings(redis_server.url, secret_key=SECRET)).start()
    yield server
    server.stop()


def test_dkim_result_and_one_click_button(api: ApiServer, tmp_path: Path) -> None:
    key = parse_private_key(generate_key("ed25519"), selector="e1", domain=DOMAIN, setting="t")
    signer = DkimSigner([key], headers=["From", "To", "Subject", "List-Unsubscribe"])
    inbox = DevInbox(
        maildir=tmp_path / "mail",
        smtp_port=free_port(),
        http_port=free_port(),
        dkim_records={key.dns_name: key.dns_record},
    )
    inbox.start()
    try:
        to = f"ada-{uuid.uuid4().hex[:6]}@example.org"
        settings = api.settings.model_copy(update={"public_url": api.url})
        uris = unsubscribe_uris(settings, recipient=to, category="product_updates", locale="en")
        email = build_email(
            notification_id=uuid.uuid4().hex,
            sender=parse_address("notifier@example.com", field="from"),
            to=[parse_address(to, field="to")],
            subject="What's new",
            text="hello",
            list_unsubscribe=uris,
            signer=signer,
        )
        signed = email.as_bytes()
        tampered = signed.replace(b"What's new", b"What is new")
        with smtplib.SMTP("127.0.0.1", inbox.smtp_port) as smtp:
            smtp.sendmail("notifier@example.com", [to], signed)
            smtp.sendmail("notifier@example.com", [to], tampered)
        with httpx.Client(base_url=inbox.http_url, timeout=30) as web:
            items = web.get("/api/v2/messages").json()["items"]
            by_subject = {item["Content"]["Headers"]["Subject"][0]: item["ID"] for item in items}
            good_id, bad_id = by_subject["What's new"], by_subject["What is new"]
            good = web.get(f"/messages/{good_id}").text
            bad = web.get(f"/messages/{bad_id}").text
            assert (
                'class="dkim-pass">pass</span> (ed25519-sha256, d=mail.example.com, s=e1)' in good
            )
            assert 'class="dkim-fail">fail</span>' in bad
            assert f"<code>{uris[0]}</code>" in good and "one-click (RFC 8058)" in good

            # A cross-site post of the button's form is refused; the inbox's own goes through.
            action = f"/messages/{good_id}/unsubscribe"
            assert web.post(action, headers={"Origin": "http://evil.example"}).status_code == 403
            answered = web.post(action, headers={"Origin": inbox.http_url})
            assert answered.status_code == 200
            assert "One-click POST answered 200" in answered.text
    finally:
        inbox.stop()

    async def entry() -> SuppressionEntry | None:
        client = connect_async(api.settings)
        try:
            return await SuppressionStore(client, prefix=api.settings.redis_prefix).get(
                to, "product_updates"
            )
        finally:
            await client.aclose()

    found = asyncio.run(entry())
    assert found is not None and found.reason == "unsubscribe"

"""Webhooks' pure parts: URL safety, signing, endpoint filters and ownership, event ids."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notifier.errors import UnsafeWebhookUrl
from notifier.settings import load_settings
from notifier.webhooks.events import EVENT_TYPES, notification_event
from notifier.webhooks.models import Endpoint, EndpointSecret
from notifier.webhooks.signing import new_secret, signed_headers
from notifier.webhooks.urls import check_url, forbidden_address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.7", "private"),
        ("192.168.1.1", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("100.64.1.1", "carrier-grade NAT"),
    ],
)
def test_internal_addresses_are_named(address: str, reason: str) -> None:
    found = forbidden_address(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "production", "words"),
    [
        ("http://93.184.216.34/hook", True, "https"),
        ("ftp://example.com/hook", False, "http"),
        ("https://user:pw@93.184.216.34/", False, "credentials"),
        ("https:///nohost", False, "host"),
        ("https://93.184.216.34/a b", False, "spaces"),
        ("https://93.184.216.34:99999/", False, "port"),
        ("https://127.0.0.1/hook", True, "loopback"),
        ("https://[::1]:8443/hook", True, "loopback"),
        ("https://[::1/hook", False, "valid"),
        ("https://bad\x00host.example/", True, "resolve"),
        ("https://does-not-exist.invalid/", True, "resolve"),
    ],
)
def test_refused_urls(url: str, production: bool, words: str) -> None:
    with pytest.raises(UnsafeWebhookUrl) as caught:
        asyncio.run(check_url(url, production=production, allow_private=False))
    assert words in str(caught.value)


def test_private_allowed_skips_the_address_check_but_not_https_in_production() -> None:
    asyncio.run(check_url("http://127.0.0.1:9/hook", production=False, allow_private=True))
    with pytest.raises(UnsafeWebhookUrl):
        asyncio.run(check_url("http://127.0.0.1:9/hook", production=True, allow_private=True))


def test_webhook_allow_private_defaults_by_environment() -> None:
    assert load_settings(notifier_env="development").webhook_private_allowed
    production = load_settings(notifier_env="production", mail_from="ops@example.org")
    assert not production.webhook_private_allowed
    assert load_settings(webhook_retry_schedule="1, 2.5").webhook_retry_schedule == [1.0, 2.5]


def test_signed_headers_verify_with_each_secret_in_use() -> None:
    old, new, other = new_secret(), new_secret(), new_secret()
    body = '{"type":"notification.sent","timestamp":"2025-01-01T00:00:00.000Z","data":{}}'
    headers = signed_headers(message_id="msg_1", body=body, secrets_in_use=[new, old])
    assert Webhook(old).verify(body, headers) == Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("sent", "failed"), headers)


def test_rotated_out_secret_stops_signing_after_its_grace() -> None:
    endpoint = Endpoint(
        id="ep_1",
        url="https://example.com",
        event_types=(),
        description="",
        owner="alice",
        all_owners=False,
        secrets=(EndpointSecret("whsec_new"), EndpointSecret("whsec_old", expires=100.0)),
        created=0.0,
    )
    assert endpoint.secrets_in_use(99.0) == ["whsec_new", "whsec_old"]
    assert endpoint.secrets_in_use(100.0) == ["whsec_new"]


def test_endpoint_filter_and_ownership() -> None:
    def endpoint(**changes: object) -> Endpoint:
        values: dict[str, object] = {
            "id": "ep_1",
            "url": "https://example.com",
            "event_types": (),
            "description": "",
            "owner": "alice",
            "all_owners": False,
            "secrets": (),
            "created": 0.0,
        }
        values.update(changes)
        return Endpoint(**values)  # type: ignore[arg-type]

    assert endpoint().wants("notification.sent", "alice")
    assert not endpoint().wants("notification.sent", "bob")
    assert not endpoint().wants("notification.sent", None)
    assert endpoint(all_owners=True).wants("notification.sent", None)
    failed_only = endpoint(event_types=("notification.failed",))
    assert failed_only.wants("notification.failed", "alice")
    assert not failed_only.wants("notification.sent", "alice")
    assert not endpoint(disabled=True).wants("notification.sent", "alice")


def test_event_ids_are_stable_and_the_payload_has_the_standard_shape() -> None:
    def event(attempt: int) -> object:
        return notification_event(
            "sent",
            notification_id="n1",
            template="welcome",
            recipients=["ada@example.com"],
            owner="alice",
            attempt=attempt,
            smtp_code=250,
            smtp_message="250 ok",
            at=datetime(2025, 1, 1, tzinfo=UTC).timestamp(),
        )

    first, again, second = event(1), event(1), event(2)
    assert first.id == again.id != second.id  # type: ignore[attr-defined]
    body = first.body()  # type: ignore[attr-defined]
    assert body.startswith('{"type":"notification.sent","timestamp":"2025-01-01T00:00:00.000Z"')
    assert '"notification_id":"n1"' in body and '"smtp_code":250' in body
    assert "owner" not in body
    with pytest.raises(ValueError, match="unknown"):
        notification_event(
            "exploded", notification_id="n", template=None, recipients=[], owner=None, at=0.0
        )
    assert "event.ignored" in EVENT_TYPES and "notification.soft_bounced" in EVENT_TYPES


def test_client_verify_webhook() -> None:
    from notifier.client import NotifierClient
    from notifier.errors import InvalidWebhookSignature

    secret, rotated = new_secret(), new_secret()
    body = '{"type":"notification.failed","timestamp":"2025-01-01T00:00:00.000Z","data":{}}'
    headers = signed_headers(message_id="msg_9", body=body, secrets_in_use=[secret])
    client = NotifierClient("redis://127.0.0.1:1/0", webhook_secret=secret)
    try:
        assert client.verify_webhook(body.encode(), headers)["type"] == "notification.failed"
        assert client.verify_webhook(body, headers, secret=[rotated, secret])["data"] == {}
        with pytest.raises(InvalidWebhookSignature):
            client.verify_webhook(body, headers, secret=rotated)
        with pytest.raises(InvalidWebhookSignature):
            client.verify_webhook(body + " ", headers)
        old = signed_headers(
            message_id="msg_9",
            body=body,
            secrets_in_use=[secret],
            at=datetime(2020, 1, 1, tzinfo=UTC),
        )
        with pytest.raises(InvalidWebhookSignature, match="too old"):
            client.verify_webhook(body, old)
    finally:
        client.close()


def test_post_webhook_reads_at_most_the_cap_and_follows_no_redirect() -> None:
    import httpx

    from notifier.webhooks.delivery import post_webhook

    class Chunks(httpx.AsyncByteStream):
        """A body that streams in (httpx reads a bytes body up front)."""

        def __init__(self, count: int) -> None:
            self.count = count

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for _ in range(self.count):
                yield b"x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/moved":
            return httpx.Response(
                301, headers={"location": "http://127.0.0.1/elsewhere"}, stream=Chunks(0)
            )
        assert request.headers["webhook-id"] == "msg_1"
        return httpx.Response(200, stream=Chunks(10))

    async def run() -> tuple[object, object]:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(handler), follow_redirects=False
        ) as client:
            big = await post_webhook(
                client,
                "http://receiver.test/hook",
                body="{}",
                headers={"webhook-id": "msg_1"},
                time_limit=5,
                max_bytes=100,
            )
            moved = await post_webhook(
                client,
                "http://receiver.test/moved",
                body="{}",
                headers={"webhook-id": "msg_1"},
                time_limit=5,
                max_bytes=100,
            )
        return big, moved

    big, moved = asyncio.run(run())
    assert big.status == 200 and len(big.body) == 100 and big.truncated  # type: ignore[attr-defined]
    assert moved.status == 301  # type: ignore[attr-defined]


def test_webhook_timeout_must_fit_in_the_task_time_limit() -> None:
    from notifier.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="WEBHOOK_TIMEOUT"):
        load_settings(webhook_timeout=120, task_time_limit=120)
    # Left at its default, it shrinks to fit a short TASK_TIME_LIMIT instead.
    short = load_settings(
        task_time_limit=6,
        send_timeout=2,
        broker_visibility_timeout=60,
        retry_backoff_base=0.1,
        retry_backoff_max=1,
    )
    assert short.webhook_timeout == 3
    with pytest.raises(ConfigurationError, match="WEBHOOK_RETRY_SCHEDULE"):
        load_settings(webhook_retry_schedule="5,-1")

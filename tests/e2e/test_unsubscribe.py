"""One-click unsubscribe and preferences with real parts: a worker (DKIM on) sends a
product_updates mail whose List-Unsubscribe headers are signed; POSTing its URL to the real API
unsubscribes; the next send of that category ends ``suppressed``, while a password reset is
delivered. The preferences page is driven in headless Chromium. Forged and expired tokens
change nothing.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from notifier.delivery.dkim import generate_key, parse_private_key
from notifier.unsubscribe import tokens
from tests.support.api_server import ApiServer, api_settings
from tests.support.browser import Chromium
from tests.support.cli import run_cli
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

SECRET = "unsubscribe-e2e-secret-0123456789abcdef"
KEY = "ops-key"
DOMAIN = "mail.example.com"


@pytest.fixture
def stack(
    own_redis: RedisServer,
    smtp: RecordingSMTPServer,
    make_worker: Callable[..., WorkerProcess],
) -> Iterator[tuple[ApiServer, dict[str, str]]]:
    settings = api_settings(
        own_redis.url, secret_key=SECRET, api_keys=[f"ops:{KEY}:send+read+manage"]
    )
    api = ApiServer(settings)
    pem = generate_key("rsa")
    records = {}
    key = parse_private_key(pem, selector="s1", domain=DOMAIN, setting="test")
    records[key.dns_name] = key.dns_record
    env = service_env(
        redis_url=own_redis.url,
        smtp_port=smtp.port,
        extra={
            "SECRET_KEY": SECRET,
            "PUBLIC_URL": api.url,
            "DKIM_DOMAIN": DOMAIN,
            "DKIM_SELECTOR": "s1",
            "DKIM_PRIVATE_KEY": pem.decode(),
        },
    )
    make_worker(env)
    api.start()
    yield api, records
    api.stop()


def send(http: httpx.Client, to: str, template: str, locale: str = "en") -> str:
    contexts = {
        "product_update": {"name": "Ada", "headline": "Reports", "summary": "Now weekly."},
        "weekly_digest": {"name": "Ada", "summary": "3 comments"},
        "password_reset": {"name": "Ada", "reset_url": "https://example.com/reset/1"},
    }
    response = http.post(
        "/api/v1/notifications",
        json={"to": [to], "template": template, "locale": locale, "context": contexts[template]},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def unsubscribe_url(message_bytes: bytes, api_url: str) -> str:
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", message_bytes)
    header = re.search(rb"^List-Unsubscribe: (.*)$", unfolded, re.MULTILINE)
    assert header is not None
    urls = re.findall(r"<([^>]+)>", header.group(1).decode())
    assert urls and urls[0].startswith(f"{api_url}/u/")
    return str(urls[0])


def test_one_click_unsubscribe_then_suppressed_but_password_reset_delivered(
    stack: tuple[ApiServer, dict[str, str]], smtp: RecordingSMTPServer, own_redis: RedisServer
) -> None:
    api, records = stack
    ada = f"ada-{uuid.uuid4().hex[:6]}@example.org"
    with api.client(KEY) as http:
        first = send(http, ada, "product_update")
        [received] = smtp.wait_for(1, to=ada)
        wait_for_status(own_redis.url, first, {"sent"})
        data = received.data
        message = received.parsed()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = unsubscribe_url(data, api.url)

        # Both headers are inside the DKIM signature, which verifies.
        signature = dict(dkim.DKIM(data).headers)[b"DKIM-Signature"]
        signed = re.search(rb"h=([^;]+);", re.sub(rb"\s+", b"", signature))
        assert signed is not None
        assert {b"list-unsubscribe", b"list-unsubscribe-post"} <= set(signed.group(1).split(b":"))
        dnsfunc = lambda name, timeout=5: records.get(name.decode().rstrip("."), "").encode()  # noqa: E731
        assert dkim.verify(data, dnsfunc=dnsfunc)

        # The one-click POST, as a mailbox provider makes it (RFC 8058): no API key.
        with httpx.Client(timeout=30) as provider:
            body = {"List-Unsubscribe": "One-Click"}
            answer = provider.post(url, data=body)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "unsubscribed": True,
                "category": "product_updates",
                "changed": True,
            }
            again = provider.post(url, data=body)
            assert again.status_code == 200 and again.json()["changed"] is False

        entry = http.get(f"/api/v1/suppressions/{ada}", params={"category": "product_updates"})
        assert entry.status_code == 200, entry.text
        assert entry.json()["reason"] == "unsubscribe"
        assert entry.json()["category"] == "product_updates"
        prefs = http.get(f"/api/v1/recipients/{ada}/preferences").json()
        assert prefs["categories"] == {"digest": True, "product_updates": False}

        second = send(http, ada, "product_update")
        record = wait_for_status(own_redis.url, second, {"suppressed", "sent", "failed"})
        assert record.status == "suppressed" and record.attempts == ()
        assert record.suppressed[ada]["reason"] == "unsubscribe"

        # Another category still goes, and transactional mail is never stopped by it.
        digest = send(http, ada, "weekly_digest")
        reset = send(http, ada, "password_reset")
        assert wait_for_status(own_redis.url, digest, {"sent", "suppressed"}).status == "sent"
        assert wait_for_status(own_redis.url, reset, {"sent", "suppressed"}).status == "sent"
        delivered = smtp.wait_for(3, to=ada)
        subjects = [str(m.parsed()["Subject"]) for m in delivered]
        assert len(delivered) == 3 and not any("Reports" in s for s in subjects[1:])
        reset_mail = next(m.parsed() for m in delivered if m.parsed()["List-Unsubscribe"] is None)
        assert "password" in str(reset_mail["Subject"]).lower()

        # Leaving everything does not stop transactional mail either.
        put = http.put(f"/api/v1/recipients/{ada}/preferences", json={"unsubscribed_all": True})
        assert put.status_code == 200 and put.json()["unsubscribed_all"] is True
        blocked = send(http, ada, "weekly_digest")
        assert wait_for_status(own_redis.url, blocked, {"sent", "suppressed"}).status == (
            "suppressed"
        )
        reset = send(http, ada, "password_reset")
        assert wait_for_status(own_redis.url, reset, {"sent", "suppressed"}).status == "sent"


def expired_token(recipient: str, category: str) -> str:
    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 400 * 86400

    old = URLSafeTimedSerializer(SECRET, salt=tokens._SALT, signer=LongAgo)
    return old.dumps({"r": recipient, "c": category, "l": "en"})


def test_forged_and_expired_tokens_change_nothing(
    stack: tuple[ApiServer, dict[str, str]],
) -> None:
    api, _ = stack
    victim = f"victim-{uuid.uuid4().hex[:6]}@example.org"
    genuine = URLSafeTimedSerializer(SECRET, salt=tokens._SALT).dumps(
        {"r": victim, "c": "product_updates", "l": "en"}
    )
    other_key = URLSafeTimedSerializer("another-secret-entirely", salt=tokens._SALT)
    forged = [
        "nonsense",
        genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),
        other_key.dumps({"r": victim, "c": "product_updates", "l": "en"}),
        expired_token(victim, "product_updates"),
    ]
    with httpx.Client(base_url=api.url, timeout=30) as anonymous, api.client(KEY) as http:
        for token in forged:
            answer = anonymous.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
            assert answer.status_code == 400, (token, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            page = anonymous.get(f"/u/{token}")
            assert page.status_code == 400 and "<form" not in page.text
            saved = anonymous.post(
                f"/u/{token}/preferences", data={"unsubscribed_all": "1", "csrf": "x"}
            )
            assert saved.status_code == 400
        assert "expired" in anonymous.get(f"/u/{forged[-1]}").text
        listed = http.get("/api/v1/suppressions", params={"domain": "example.org"}).json()
        assert all(item["address"] != victim for item in listed["items"])
        prefs = http.get(f"/api/v1/recipients/{victim}/preferences").json()
        assert prefs["categories"] == {"digest": True, "product_updates": True}

        # The page's form without its CSRF token (a cross-site post) changes nothing either.
        cross_site = anonymous.post(f"/u/{genuine}/preferences", data={"unsubscribed_all": "1"})
        assert cross_site.status_code == 403
        assert http.get(f"/api/v1/recipients/{victim}/preferences").json() == prefs


def test_preferences_api_validates(stack: tuple[ApiServer, dict[str, str]]) -> None:
    api, _ = stack
    with api.client(KEY) as http:
        for body, field in (
            ({"categories": {"transactional": False}}, "categories.transactional"),
            ({"categories": {"nope": False}}, "categories.nope"),
        ):
            answer = http.put("/api/v1/recipients/a@example.org/preferences", json=body)
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["field"] == field
        bad = http.get("/api/v1/recipients/not-an-address/preferences")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "address"
        assert (
            httpx.get(f"{api.url}/api/v1/recipients/a@example.org/preferences").status_code == 401
        )


def test_preferences_page_in_chromium(
    stack: tuple[ApiServer, dict[str, str]], smtp: RecordingSMTPServer, tmp_path: Path
) -> None:
    api, _ = stack
    anna = f"anna-{uuid.uuid4().hex[:6]}@example.org"
    with api.client(KEY) as http:
        send(http, anna, "weekly_digest", locale="ru")
        [received] = smtp.wait_for(1, to=anna)
        url = unsubscribe_url(received.data, api.url)
        browser = Chromium(tmp_path / "profile")
        try:
            browser.navigate(url)
            # The page follows the mail's locale, and lists both categories, both ticked.
            assert browser.evaluate("document.documentElement.lang") == "ru"
            assert browser.evaluate("document.querySelector('h1').textContent") == (
                "Настройки рассылок"
            )
            assert (
                browser.evaluate(
                    "[...document.querySelectorAll('input[name=subscribed]')]"
                    ".map(i => i.value + ':' + i.checked).join(',')"
                )
                == "digest:true,product_updates:true"
            )
            # Untick the digest, submit the form as a person would.
            browser.evaluate("document.querySelector('input[value=digest]').click()")
            browser.evaluate("document.querySelector('button[type=submit]').click()")
            browser.wait_for("location.search === '?saved=1'")
            assert browser.evaluate("document.querySelector('[role=status]').textContent") == (
                "Настройки сохранены."
            )
            assert browser.evaluate("document.querySelector('input[value=digest]').checked") is (
                False
            )
        finally:
            browser.close()
        prefs = http.get(f"/api/v1/recipients/{anna}/preferences").json()
        assert prefs["categories"] == {"digest": False, "product_updates": True}
        assert prefs["unsubscribed_all"] is False
        entry = http.get(f"/api/v1/suppressions/{anna}", params={"category": "digest"}).json()
        assert entry["reason"] == "unsubscribe" and entry["source"] == "preferences-page"


def test_preferences_cli(own_redis: RedisServer, tmp_path: Path) -> None:
    env = service_env(redis_url=own_redis.url, smtp_port=1)
    ada = f"ada-{uuid.uuid4().hex[:6]}@Example.org"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(env, "preferences", *args)

    shown = cli("show", ada)
    assert shown.returncode == 0, shown.stderr
    assert "digest: receives" in shown.stdout and "product_updates: receives" in shown.stdout
    changed = cli("set", ada, "--unsubscribe", "digest")
    assert changed.returncode == 0 and "digest: unsubscribed" in changed.stdout
    assert "product_updates: receives" in changed.stdout
    assert "digest: unsubscribed" in cli("show", ada.lower().replace("example", "EXAMPLE")).stdout
    leave = cli("set", ada, "--all")
    assert "unsubscribed from all categories" in leave.stdout
    back = cli("set", ada, "--not-all", "--subscribe", "digest")
    assert "digest: receives" in back.stdout and "unsubscribed from all" not in back.stdout
    for args, problem in (
        (("set", ada, "--unsubscribe", "transactional"), "transactional"),
        (("set", ada, "--unsubscribe", "nope"), "no template declares category 'nope'"),
        (("set", ada), "give --subscribe"),
        (("show", "not-an-address"), "Invalid value"),
    ):
        failed = cli(*args)
        assert failed.returncode != 0 and problem in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr

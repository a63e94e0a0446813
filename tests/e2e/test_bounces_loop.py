"""The whole loop with real parts: a worker sends over SMTP with a VERP sender, a DSN comes
back to the bounce receiver, the record says ``bounced``, the address is suppressed, and the
next send to it ends ``suppressed`` without an SMTP transaction; force and CSV round-trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from notifier.bounces.verp import parse_bounce_address
from notifier.settings import Settings, load_settings
from tests.support import bounce_mail
from tests.support.api_server import ApiServer, api_settings
from tests.support.bounce_receiver import BounceReceiver
from tests.support.cli import run_cli as cli
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess, service_env

DOMAIN = "bounces.example.com"
SECRET = "e2e-bounce-secret-0123456789abcdef"
ADMIN_KEY = "admin-key"
SENDER_KEY = "sender-key"


@pytest.fixture
def loop_env(own_redis: RedisServer, smtp: RecordingSMTPServer) -> dict[str, str]:
    return service_env(
        redis_url=own_redis.url,
        smtp_port=smtp.port,
        extra={"BOUNCE_DOMAIN": DOMAIN, "SECRET_KEY": SECRET},
    )


@pytest.fixture
def stack(
    own_redis: RedisServer,
    loop_env: dict[str, str],
    make_worker: Callable[..., WorkerProcess],
) -> Iterator[tuple[ApiServer, BounceReceiver, Settings]]:
    make_worker(loop_env)
    settings = api_settings(
        own_redis.url,
        bounce_domain=DOMAIN,
        secret_key=SECRET,
        api_keys=[f"admin:{ADMIN_KEY}:send+read+manage+admin", f"app:{SENDER_KEY}:send+read"],
    )
    api = ApiServer(settings).start()
    receiver = BounceReceiver(
        load_settings(redis_url=own_redis.url, bounce_domain=DOMAIN, secret_key=SECRET)
    ).start()
    yield api, receiver, settings
    receiver.stop()
    api.stop()


def send(http: httpx.Client, to: list[str], **extra: object) -> str:
    body = {
        "to": to,
        "template": "welcome",
        "context": {"name": "Ada", "login_url": "https://example.com/login"},
        **extra,
    }
    response = http.post("/api/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_send_bounce_suppress_and_skip(
    stack: tuple[ApiServer, BounceReceiver, Settings],
    smtp: RecordingSMTPServer,
    own_redis: RedisServer,
    loop_env: dict[str, str],
) -> None:
    api, receiver, settings = stack
    gone = f"gone-{uuid.uuid4().hex[:6]}@example.net"
    with api.client(ADMIN_KEY) as admin, api.client(SENDER_KEY) as app:
        first = send(app, [gone])
        (message,) = smtp.wait_for(1, to=gone)
        # VERP: the envelope sender is signed and names this notification; From is unchanged.
        assert message.mail_from.startswith("bounces+") and message.mail_from.endswith(DOMAIN)
        token = parse_bounce_address(
            message.mail_from, domain=DOMAIN, secret=settings.signing_secret
        )
        assert token is not None and token.notification_id == first and token.matches(gone)
        assert "notifier@example.com" in str(message.parsed()["From"])
        wait_for_status(own_redis.url, first, {"sent"})

        dsn = bounce_mail.postfix_dsn(gone, message_id=message.message_id, to=message.mail_from)
        assert receiver.send(dsn, to=message.mail_from)[0] == 250

        record = app.get(f"/api/v1/notifications/{first}").json()
        assert record["status"] == "sent"
        assert record["bounced_at"] is not None
        assert [(e["type"], e["recipient"], e["status"]) for e in record["feedback"]] == [
            ("bounced", gone, "5.1.1")
        ]
        entry = app.get(f"/api/v1/suppressions/{gone}")
        assert entry.status_code == 200 and entry.json()["reason"] == "hard_bounce"

        # The next send to it: suppressed, not failed, no SMTP transaction.
        second = send(app, [gone])
        record = wait_for_status(own_redis.url, second, {"suppressed", "sent", "failed"})
        assert record.status == "suppressed" and record.attempts == ()
        assert gone in record.suppressed and record.suppressed[gone]["reason"] == "hard_bounce"
        listed = app.get("/api/v1/notifications", params={"status": "suppressed"}).json()
        assert second in [item["id"] for item in listed["items"]]
        assert app.get("/api/v1/notifications", params={"status": "failed"}).json()["items"] == []

        # Mixed: the suppressed recipient is left out of the envelope, the other gets it.
        other = f"ok-{uuid.uuid4().hex[:6]}@example.net"
        third = send(app, [gone, other])
        (delivered,) = smtp.wait_for(1, to=other)
        assert gone not in delivered.rcpt_tos
        record = wait_for_status(own_redis.url, third, {"sent"})
        assert list(record.suppressed) == [gone]
        assert len(smtp.messages_to(gone)) == 1

        # force: refused without the admin scope, honoured with it.
        refused = app.post(
            "/api/v1/notifications",
            json={
                "to": [gone],
                "template": "welcome",
                "force": True,
                "context": {"name": "A", "login_url": "https://x"},
            },
        )
        assert refused.status_code == 403, refused.text
        forced = send(admin, [gone], force=True)
        smtp.wait_for(2, to=gone)
        assert wait_for_status(own_redis.url, forced, {"sent"}).status == "sent"

    # The CLI sees the same list, and the CSV round-trips through export and import.
    listed_cli = cli(loop_env, "suppressions", "list")
    assert listed_cli.returncode == 0 and gone in listed_cli.stdout, listed_cli.stderr
    exported = cli(loop_env, "suppressions", "export")
    assert exported.returncode == 0 and gone in exported.stdout
    assert cli(loop_env, "suppressions", "remove", gone).returncode == 0
    assert cli(loop_env, "suppressions", "remove", gone).returncode == 1
    imported = cli(loop_env, "suppressions", "import", "-", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    with api.client(ADMIN_KEY) as admin:
        again = admin.get(f"/api/v1/suppressions/{gone}").json()
        assert again["reason"] == "hard_bounce" and again["source"] == "dsn"
        # Bad rows: nothing imported, each named.
        bad = admin.post(
            "/api/v1/suppressions/import",
            content="address,reason\nnew@example.org,manual\nnot-an-address,manual\nx@y.org,oops\n",
            headers={"Content-Type": "text/csv"},
        )
        assert bad.status_code == 422
        assert [e["field"] for e in bad.json()["errors"]] == ["row[2]", "row[3]"]
        assert admin.get("/api/v1/suppressions/new@example.org").status_code == 404
        export = admin.get("/api/v1/suppressions/export")
        assert export.status_code == 200 and export.text.startswith("address,reason,category")
        assert gone in export.text
    bad_cli = cli(loop_env, "suppressions", "add", "not an address")
    assert bad_cli.returncode != 0 and "Traceback" not in bad_cli.stderr


def test_a_deferred_recipient_suppressed_before_its_retry(
    stack: tuple[ApiServer, BounceReceiver, Settings],
    smtp: RecordingSMTPServer,
    own_redis: RedisServer,
) -> None:
    api, _, _ = stack
    ok, later = (f"{name}-{uuid.uuid4().hex[:6]}@example.net" for name in ("ok", "later"))
    smtp.fail(451, stage="rcpt", recipients=[later])
    with api.client(ADMIN_KEY) as admin:
        notification_id = send(admin, [ok, later])
        wait_for_status(own_redis.url, notification_id, {"retrying"})
        assert admin.put(f"/api/v1/suppressions/{later}", json={}).status_code == 201
        record = wait_for_status(own_redis.url, notification_id, {"sent", "suppressed", "failed"})
    # The retry sent nothing: `ok` had it already and `later` is suppressed now.
    assert record.status == "sent", record
    assert record.delivered_to == (ok,)
    assert record.suppressed[later]["reason"] == "manual"
    assert smtp.messages_to(later) == []
    assert len(smtp.messages_to(ok)) == 1

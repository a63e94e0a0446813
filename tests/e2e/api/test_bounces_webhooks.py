"""Provider webhooks against the real API and Redis: SES via SNS (RSA-signed, certificate from
an allowlisted local URL), SendGrid (ECDSA) and Postmark (basic auth). A valid request applies
its events once; a bad signature is 401/403 and changes nothing; a replay changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.server
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from notifier.bounces.signatures import sns_string_to_sign
from notifier.compose.mime import make_message_id
from notifier.settings import Settings
from notifier.storage.redis import connect_redis
from notifier.storage.store import NotificationStore
from tests.e2e.api.conftest import assert_problem
from tests.support.api_server import API_KEY, ApiServer, api_settings
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"


class CertificateHost:
    """A local HTTP server standing in for sns.<region>.amazonaws.com."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.visits: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.visits.append(self.path)
                body = host.pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def cert_host(sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> Iterator[CertificateHost]:
    host = CertificateHost(sns_key[1])
    host.thread.start()
    yield host
    host.server.shutdown()
    host.server.server_close()


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def webhook_api(
    redis_server: RedisServer,
    make_api: Callable[[Settings], ApiServer],
    cert_host: CertificateHost,
    sendgrid_key: ec.EllipticCurvePrivateKey,
) -> ApiServer:
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = api_settings(
        redis_server.url,
        redis_prefix=f"wh{uuid.uuid4().hex[:8]}",
        ses_sns_topic_arns=[TOPIC],
        sns_cert_url_pattern=rf"^http://127\.0\.0\.1:{cert_host.port}/[^?#]+\.pem$",
        sendgrid_webhook_public_key=base64.b64encode(public).decode(),
        postmark_webhook_username="pm-user",
        postmark_webhook_password="pm-password",
    )
    return make_api(settings)


def sns_message(
    key: rsa.RSAPrivateKey, host: CertificateHost, inner: dict[str, Any], **changes: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": orjson.dumps(inner).decode(),
        "Timestamp": "2026-11-30T18:00:00.000Z",
        "SignatureVersion": "2",
        "SigningCertURL": f"{host.base}/SimpleNotificationService-test.pem",
    }
    message.update(changes)
    signature = key.sign(sns_string_to_sign(message), padding.PKCS1v15(), hashes.SHA256())
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def ses_bounce(address: str) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "feedbackId": f"fb-{uuid.uuid4()}",
            "bouncedRecipients": [
                {"emailAddress": address, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}
            ],
        },
        "mail": {"messageId": "ses-1", "commonHeaders": {"messageId": "<not-ours@x>"}},
    }


def suppression(http: httpx.Client, address: str) -> dict[str, Any] | None:
    response = http.get(f"/api/v1/suppressions/{address}")
    return response.json() if response.status_code == 200 else None


def test_ses_via_sns(
    webhook_api: ApiServer, sns_key: tuple[rsa.RSAPrivateKey, bytes], cert_host: CertificateHost
) -> None:
    key = sns_key[0]
    address = f"ses-{uuid.uuid4().hex[:6]}@example.com"
    message = sns_message(key, cert_host, ses_bounce(address))
    url = "/api/v1/webhooks/inbound/ses"
    with webhook_api.client() as http, webhook_api.client(key=None) as anonymous:
        # Altered after signing: refused, nothing recorded.
        forged = {**message, "Message": orjson.dumps(ses_bounce("x@example.com")).decode()}
        assert_problem(anonymous.post(url, json=forged), 403)
        assert suppression(http, "x@example.com") is None
        # A certificate URL outside the allowlist is never fetched.
        elsewhere = sns_message(
            key, cert_host, ses_bounce(address), SigningCertURL="http://evil.example/c.pem"
        )
        assert_problem(anonymous.post(url, json=elsewhere), 403)
        other_topic = sns_message(key, cert_host, ses_bounce(address), TopicArn=TOPIC + "-other")
        assert_problem(anonymous.post(url, json=other_topic), 403)
        assert suppression(http, address) is None

        first = anonymous.post(url, json=message)
        assert first.status_code == 200, first.text
        assert first.json() == {"applied": 1, "duplicates": 0}
        entry = suppression(http, address)
        assert entry is not None and (entry["reason"], entry["source"]) == ("hard_bounce", "ses")
        replay = anonymous.post(url, json=message)
        assert replay.json() == {"applied": 0, "duplicates": 1}

        # SubscriptionConfirmation: verified, then SubscribeURL (same host as the cert) visited.
        confirm = sns_message(
            key,
            cert_host,
            {},
            Type="SubscriptionConfirmation",
            Token="tok",
            SubscribeURL=f"{cert_host.base}/?Action=ConfirmSubscription&Token=tok",
            Message="You have chosen to subscribe to the topic",
        )
        answer = anonymous.post(url, json=confirm)
        assert answer.status_code == 200, answer.text
        assert any("ConfirmSubscription" in visit for visit in cert_host.visits)


def sendgrid_post(
    http: httpx.Client,
    key: ec.EllipticCurvePrivateKey,
    events: list[dict[str, Any]],
    *,
    tamper: bool = False,
) -> httpx.Response:
    body = orjson.dumps(events)
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    if tamper:
        body = body.replace(b"spamreport", b"bounce")
    return http.post(
        "/api/v1/webhooks/inbound/sendgrid",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def test_sendgrid(webhook_api: ApiServer, sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    spam = f"sg-{uuid.uuid4().hex[:6]}@example.com"
    events: list[dict[str, Any]] = [
        {"event": "spamreport", "email": spam, "sg_event_id": f"e-{uuid.uuid4()}", "timestamp": 1},
        {"event": "delivered", "email": "fine@example.com", "sg_event_id": "d-1"},
    ]
    with webhook_api.client() as http, webhook_api.client(key=None) as anonymous:
        assert_problem(sendgrid_post(anonymous, sendgrid_key, events, tamper=True), 403)
        other_key = ec.generate_private_key(ec.SECP256R1())
        assert_problem(sendgrid_post(anonymous, other_key, events), 403)
        unsigned = anonymous.post("/api/v1/webhooks/inbound/sendgrid", json=events)
        assert_problem(unsigned, 401)
        assert suppression(http, spam) is None

        assert sendgrid_post(anonymous, sendgrid_key, events).json() == {
            "applied": 1,
            "duplicates": 0,
        }
        entry = suppression(http, spam)
        assert entry is not None and (entry["reason"], entry["source"]) == ("complaint", "sendgrid")
        assert sendgrid_post(anonymous, sendgrid_key, events).json() == {
            "applied": 0,
            "duplicates": 1,
        }
        metrics = anonymous.get("/metrics").text
        assert 'notifier_complaints_total{source="sendgrid"}' in metrics
        size = [
            line
            for line in metrics.splitlines()
            if line.startswith("notifier_suppression_list_size ")
        ]
        assert size and float(size[0].split()[1]) >= 1


def test_postmark(webhook_api: ApiServer) -> None:
    address = f"pm-{uuid.uuid4().hex[:6]}@example.com"
    payload = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "ID": int(time.time() * 1000),
        "Email": address,
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "BouncedAt": "2026-11-30T18:00:00Z",
    }
    url = "/api/v1/webhooks/inbound/postmark"
    with webhook_api.client() as http, webhook_api.client(key=None) as anonymous:
        wrong = anonymous.post(url, json=payload, auth=("pm-user", "wrong"))
        assert_problem(wrong, 401)
        assert wrong.headers["WWW-Authenticate"].startswith("Basic")
        assert_problem(anonymous.post(url, json=payload), 401)
        assert suppression(http, address) is None

        good = anonymous.post(url, json=payload, auth=("pm-user", "pm-password"))
        assert good.json() == {"applied": 1, "duplicates": 0}
        entry = suppression(http, address)
        assert entry is not None and entry["reason"] == "hard_bounce" and "5.1.1" in entry["note"]
        replay = anonymous.post(url, json=payload, auth=("pm-user", "pm-password"))
        assert replay.json() == {"applied": 0, "duplicates": 1}


def test_unconfigured_provider_is_404(
    redis_server: RedisServer, make_api: Callable[[Settings], ApiServer]
) -> None:
    api = make_api(api_settings(redis_server.url))
    with api.client(key=None) as anonymous:
        for provider in ("ses", "sendgrid", "postmark"):
            assert_problem(anonymous.post(f"/api/v1/webhooks/inbound/{provider}", json={}), 404)


def test_suppressions_api(webhook_api: ApiServer) -> None:
    address = f"Api-{uuid.uuid4().hex[:6]}@Example.COM"
    with webhook_api.client() as http:
        created = http.put(
            f"/api/v1/suppressions/{address}", json={"reason": "manual", "note": "asked"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["address"] == address.rsplit("@", 1)[0] + "@example.com"
        assert (
            http.put(f"/api/v1/suppressions/{address}", json={"reason": "unsubscribe"}).status_code
            == 200
        )
        assert http.get(f"/api/v1/suppressions/{address.lower()}").status_code == 404
        assert http.get(f"/api/v1/suppressions/{address}").json()["reason"] == "unsubscribe"
        listed = http.get(
            "/api/v1/suppressions", params={"reason": "unsubscribe", "domain": "example.com"}
        )
        assert address.rsplit("@", 1)[0] + "@example.com" in [
            i["address"] for i in listed.json()["items"]
        ]
        assert_problem(
            http.put(f"/api/v1/suppressions/{address}", json={"reason": "bogus"}),
            422,
            field="reason",
        )
        assert_problem(
            http.put("/api/v1/suppressions/not-an-address", json={}), 422, field="address"
        )
        assert_problem(
            http.get("/api/v1/suppressions", params={"cursor": "zz"}), 422, field="cursor"
        )
        past = http.put(f"/api/v1/suppressions/{address}", json={"expires": "2000-01-01"})
        assert_problem(past, 422, field="expires")
        assert http.delete(f"/api/v1/suppressions/{address}").status_code == 204
        assert_problem(http.delete(f"/api/v1/suppressions/{address}"), 404)
        # Pages: a cursor walks the whole list without repeats.
        for number in range(5):
            http.put(f"/api/v1/suppressions/page-{number}@example.org", json={})
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "domain": "example.org"}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/api/v1/suppressions", params=params).json()
            seen.extend(item["address"] for item in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == [f"page-{n}@example.org" for n in range(5)]


def test_scopes(redis_server: RedisServer, make_api: Callable[[Settings], ApiServer]) -> None:
    api = make_api(api_settings(redis_server.url, api_keys=["reader:r-secret:read", f"{API_KEY}"]))
    with api.client("r-secret") as reader:
        assert reader.get("/api/v1/suppressions").status_code == 200
        assert_problem(reader.put("/api/v1/suppressions/a@example.com", json={}), 403)
        assert_problem(reader.get("/api/v1/bounces/unclassified"), 403)


def test_a_webhook_event_lands_on_its_notification(
    webhook_api: ApiServer, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    """SendGrid's smtp-id is the Message-ID notifier wrote: the record shows the complaint."""
    notification_id = str(uuid.uuid4())
    message_id = make_message_id(notification_id, "example.com")
    address = f"rec-{uuid.uuid4().hex[:6]}@example.com"

    async def create() -> None:
        redis = connect_redis(webhook_api.settings.redis_url)
        try:
            store = NotificationStore(redis, prefix=webhook_api.settings.redis_prefix)
            await store.accept(
                notification_id=notification_id,
                fields={"to": orjson.dumps([address]).decode(), "message_id": message_id},
                message=None,
            )
        finally:
            await redis.aclose()

    asyncio.run(create())
    event = {"event": "spamreport", "email": address, "sg_event_id": str(uuid.uuid4()),
             "smtp-id": message_id, "timestamp": 1796065000}  # fmt: skip
    with webhook_api.client() as http, webhook_api.client(key=None) as anonymous:
        assert sendgrid_post(anonymous, sendgrid_key, [event]).json()["applied"] == 1
        record = http.get(f"/api/v1/notifications/{notification_id}").json()
    assert record["complained_at"] is not None and record["complained_at"].startswith("2026-")
    assert [(e["type"], e["recipient"], e["source"]) for e in record["feedback"]] == [
        ("complained", address, "sendgrid")
    ]

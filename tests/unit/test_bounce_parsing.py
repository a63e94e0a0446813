"""DSN, ARF and non-standard bounce parsing, VERP tokens and provider normalisation (pure)."""

from __future__ import annotations

import pytest

from notifier.bounces.events import normalize_address, notification_id_from_message_id
from notifier.bounces.parse import parse_report
from notifier.bounces.providers import postmark_events, sendgrid_events, ses_events
from notifier.bounces.verp import bounce_address, make_token, parse_bounce_address, read_token
from tests.support import bounce_mail

SECRET = b"unit-test-secret"
DOMAIN = "bounces.example.com"


def test_postfix_hard_bounce() -> None:
    report = parse_report(bounce_mail.postfix_dsn("Nobody@Example.NET"))
    assert report.problem is None and report.kind == "dsn"
    (event,) = report.events
    assert event.kind == "hard_bounce" and event.type == "bounced"
    assert event.recipient == "Nobody@example.net"
    assert event.status == "5.1.1"
    assert event.diagnostic is not None and "Recipient address rejected" in event.diagnostic
    assert event.message_id == "<orig-1@example.com>"


def test_postfix_4xx_failure_is_a_soft_bounce_and_delayed_is_a_warning() -> None:
    soft = parse_report(bounce_mail.postfix_dsn("full@example.net", status="4.2.2"))
    assert [e.kind for e in soft.events] == ["soft_bounce"]
    assert soft.events[0].status == "4.2.2"
    delayed = parse_report(
        bounce_mail.postfix_dsn("slow@example.net", status="4.4.1", action="delayed")
    )
    assert [e.kind for e in delayed.events] == ["delayed"]


def test_gmail_dsn() -> None:
    report = parse_report(bounce_mail.gmail_dsn("gone@gmail.com", to="x@" + DOMAIN))
    (event,) = report.events
    assert (event.kind, event.recipient, event.status) == ("hard_bounce", "gone@gmail.com", "5.1.1")
    assert event.message_id == "<orig-2@example.com>"
    assert event.diagnostic is not None and "does not exist" in event.diagnostic


def test_exchange_dsn() -> None:
    report = parse_report(bounce_mail.exchange_dsn("user@contoso.com", to="x@" + DOMAIN))
    (event,) = report.events
    assert (event.kind, event.status) == ("hard_bounce", "5.1.10")
    assert event.message_id == "<orig-3@example.com>"


def test_exim_plain_text_bounce_goes_through_flufl_detectors() -> None:
    report = parse_report(bounce_mail.exim_plain_bounce("missing@example.org", to="x@" + DOMAIN))
    assert report.kind == "heuristic", report
    (event,) = report.events
    assert (event.kind, event.recipient) == ("hard_bounce", "missing@example.org")


def test_arf_complaint() -> None:
    report = parse_report(
        bounce_mail.arf_report("ada@example.net", to="fbl@" + DOMAIN, return_path="b@" + DOMAIN)
    )
    (event,) = report.events
    assert (event.kind, event.type, event.recipient) == (
        "complaint",
        "complained",
        "ada@example.net",
    )
    assert event.diagnostic == "abuse"
    assert event.message_id == "<orig-5@example.com>"


def test_arf_without_original_rcpt_to_uses_the_returned_message() -> None:
    report = parse_report(
        bounce_mail.arf_report(None, to="fbl@" + DOMAIN, return_path="b@" + DOMAIN)
    )
    assert [e.recipient for e in report.events] == ["redacted@example.net"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\x80",
        bounce_mail.out_of_office(to="x@" + DOMAIN),
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=y\r\n\r\n--y--\r\n",
    ],
)
def test_unreadable_or_unrelated_mail_is_a_problem_not_an_exception(raw: bytes) -> None:
    report = parse_report(raw)
    assert report.events == ()
    assert report.problem


def test_dedupe_keys_differ_per_report_and_recipient() -> None:
    one = parse_report(bounce_mail.postfix_dsn("a@example.net")).events[0]
    again = parse_report(bounce_mail.postfix_dsn("a@example.net")).events[0]
    other = parse_report(bounce_mail.postfix_dsn("a@example.net", dsn_id="<other@x>")).events[0]
    assert one.dedupe_key == again.dedupe_key != other.dedupe_key


def test_verp_round_trip_uuid_and_text_ids() -> None:
    for notification_id in ("0b0c8f7e-4a4e-4f4a-9c51-2f1d1d1e9a10", "order-42/ü"):
        address = bounce_address(notification_id, "Ada@Example.com", domain=DOMAIN, secret=SECRET)
        token = parse_bounce_address(address.upper(), domain=DOMAIN.upper(), secret=SECRET)
        assert token is not None and token.notification_id == notification_id
        assert token.matches("Ada@example.COM") and not token.matches("ada@example.com")
    uuid_address = bounce_address(
        "0b0c8f7e-4a4e-4f4a-9c51-2f1d1d1e9a10", "a@b.c", domain=DOMAIN, secret=SECRET
    )
    assert len(uuid_address.partition("@")[0]) <= 64


def test_verp_rejects_forged_altered_and_foreign_tokens() -> None:
    token = make_token("n-1", None, secret=SECRET)
    assert read_token(token, secret=SECRET) is not None
    assert read_token(token, secret=b"another-secret") is None
    flipped = ("b" if token[5] != "b" else "c").join((token[:5], token[6:]))
    assert read_token(flipped, secret=SECRET) is None
    assert read_token("not base32!", secret=SECRET) is None
    assert (
        parse_bounce_address(f"bounces+{token}@other.example", domain=DOMAIN, secret=SECRET) is None
    )
    assert parse_bounce_address(f"postmaster@{DOMAIN}", domain=DOMAIN, secret=SECRET) is None


def test_addresses_compare_like_smtp() -> None:
    assert normalize_address("<Ada.Lovelace@Example.COM>") == "Ada.Lovelace@example.com"
    for bad in ("", "no-at", "a@b@", "a b@c.d", "x@y\r\nBcc: z@w"):
        with pytest.raises(ValueError):
            normalize_address(bad)


def test_message_id_maps_back_to_the_notification_id() -> None:
    from notifier.compose.mime import make_message_id

    for notification_id in ("abc-1", "with space/ü"):
        assert notification_id_from_message_id(make_message_id(notification_id, "x.org")) == (
            notification_id
        )


def test_ses_bounce_and_complaint() -> None:
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "feedbackId": "fb-1",
            "timestamp": "2026-11-30T18:00:00.000Z",
            "bouncedRecipients": [
                {"emailAddress": "a@Example.com", "status": "5.1.1", "diagnosticCode": "550 5.1.1"}
            ],
        },
        "mail": {"source": "bounces+x@" + DOMAIN, "commonHeaders": {"messageId": "<m@x>"}},
    }
    (event,) = ses_events(bounce)
    assert (event.kind, event.recipient, event.status) == ("hard_bounce", "a@example.com", "5.1.1")
    assert event.envelope_to == ("bounces+x@" + DOMAIN,) and event.message_id == "<m@x>"
    transient = {**bounce, "bounce": {**bounce["bounce"], "bounceType": "Transient"}}  # type: ignore[dict-item]
    assert [e.kind for e in ses_events(transient)] == ["soft_bounce"]
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"feedbackId": "fb-2", "complainedRecipients": [{"emailAddress": "c@x.org"}]},
        "mail": {},
    }
    assert [(e.kind, e.recipient) for e in ses_events(complaint)] == [("complaint", "c@x.org")]
    assert ses_events({"notificationType": "Delivery", "mail": {}}) == []


def test_sendgrid_events() -> None:
    events = sendgrid_events(
        [
            {
                "event": "bounce",
                "type": "bounce",
                "email": "a@x.org",
                "sg_event_id": "1",
                "status": "5.1.1",
                "reason": "550 5.1.1 no such user",
            },
            {"event": "bounce", "type": "blocked", "email": "b@x.org", "sg_event_id": "2"},
            {"event": "spamreport", "email": "c@x.org", "sg_event_id": "3"},
            {"event": "delivered", "email": "d@x.org", "sg_event_id": "4"},
        ]
    )
    assert [(e.kind, e.recipient) for e in events] == [
        ("hard_bounce", "a@x.org"),
        ("soft_bounce", "b@x.org"),
        ("complaint", "c@x.org"),
    ]


def test_postmark_events() -> None:
    hard = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "ID": 7,
        "Email": "a@x.org",
        "Details": "smtp;550 5.1.1 unknown",
        "Metadata": {"notification_id": "n-9"},
    }
    (event,) = postmark_events(hard)
    assert (event.kind, event.status, event.notification_id) == ("hard_bounce", "5.1.1", "n-9")
    assert postmark_events({**hard, "Type": "SoftBounce"})[0].kind == "soft_bounce"
    spam = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "ID": 8, "Email": "b@x.org"}
    assert postmark_events(spam)[0].kind == "complaint"
    assert postmark_events({**hard, "Type": "AutoResponder"}) == []

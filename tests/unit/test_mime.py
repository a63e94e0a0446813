"""Unit tests for notifier.compose.mime: built messages are parsed back and checked part by part."""

# Russian text is the point of these tests, so Cyrillic look-alike letters are intended.
# ruff: noqa: RUF001

from __future__ import annotations

import email
import email.policy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest

from notifier.compose.addresses import Address, parse_address
from notifier.compose.mime import AttachmentData, OutgoingEmail, build_email, make_message_id
from notifier.errors import HeaderInjection, InvalidNotification

SENDER = Address("noreply@example.com", "Служба уведомлений")
IVAN = Address("ivan@example.com", "Иван Петров")
SUBJECT = "Ваш заказ №12345 отправлен"
TEXT = "Здравствуйте, Иван!\n\nВаш заказ отправлен.\n"
HTML = "<p>Здравствуйте, <b>Иван</b>!</p>\n<p>Ваш заказ отправлен.</p>\n"


def build(**overrides: Any) -> OutgoingEmail:
    arguments: dict[str, Any] = {
        "notification_id": "01HZXJ8K3M",
        "sender": SENDER,
        "to": [IVAN],
        "subject": SUBJECT,
        "text": TEXT,
    }
    arguments.update(overrides)
    return build_email(**arguments)


def parse(outgoing: OutgoingEmail) -> EmailMessage:
    """Parse the wire bytes back, asserting the structure is clean."""
    data = outgoing.as_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) < 998 for line in data.split(b"\r\n"))
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    for part in message.walk():
        assert part.defects == []
        for value in part.values():
            assert value.defects == ()
    return message


def body_parts(message: EmailMessage) -> list[EmailMessage]:
    return [part for part in message.walk() if not part.is_multipart()]


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_text_only_is_single_text_plain_part() -> None:
    message = parse(build())
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert lines(message.get_content()) == lines(TEXT)
    assert message["MIME-Version"] == "1.0"


def test_subject_and_from_name_round_trip_in_russian() -> None:
    outgoing = build()
    raw_headers = outgoing.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()
    message = parse(outgoing)
    assert message["Subject"] == SUBJECT
    assert message["From"].addresses[0].display_name == "Служба уведомлений"
    assert message["From"].addresses[0].addr_spec == "noreply@example.com"
    assert message["To"].addresses[0].display_name == "Иван Петров"


def test_long_russian_subject_is_folded_and_decodes() -> None:
    subject = "Очень длинная тема письма о заказе, " * 8 + "конец"
    outgoing = build(subject=subject)
    header_block = outgoing.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in header_block.split(b"\r\n"))
    assert parse(outgoing)["Subject"] == subject


def test_long_ascii_subject_keeps_its_spaces() -> None:
    subject = "Order  shipped: " + " ".join(f"item-{n}" for n in range(40)) + " done"
    outgoing = build(subject=subject)
    header_block = outgoing.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in header_block.split(b"\r\n"))
    assert parse(outgoing)["Subject"] == subject


def test_ascii_subject_that_looks_encoded_stays_literal() -> None:
    subject = "=?utf-8?b?0J/RgNC40LLQtdGC?= is not a greeting"
    assert parse(build(subject=subject))["Subject"] == subject


def test_text_and_html_make_multipart_alternative() -> None:
    message = parse(build(html=HTML))
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = body_parts(message)
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert lines(text_part.get_content()) == lines(TEXT)
    assert lines(html_part.get_content()) == lines(HTML)


def test_empty_html_means_text_only() -> None:
    assert parse(build(html="")).get_content_type() == "text/plain"


def test_ascii_body_with_long_lines_stays_under_the_line_limit() -> None:
    text = "x" * 5000 + "\nshort = line\n"
    message = parse(build(text=text))
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert lines(message.get_content()) == lines(text)


def test_ascii_body_with_short_lines_is_quoted_printable() -> None:
    text = "a\nb\n\nc = d\n" * 50
    message = parse(build(text=text))
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert lines(message.get_content()) == lines(text)


def test_russian_body_is_base64() -> None:
    assert parse(build())["Content-Transfer-Encoding"] == "base64"


def test_russian_body_with_long_lines_round_trips() -> None:
    text = "слово " * 2000
    message = parse(build(text=text, html="<p>" + text + "</p>"))
    text_part, html_part = body_parts(message)
    assert text_part.get_content().rstrip("\r\n") == text
    assert html_part.get_content().rstrip("\r\n") == "<p>" + text + "</p>"


def test_attachments_wrap_alternative_in_mixed() -> None:
    pdf = bytes(range(256)) * 40
    attachments = [
        AttachmentData("счёт за май.pdf", "application/pdf", pdf),
        AttachmentData('report "final".csv', "text/csv", b"a,b\r\n1,2\r\n"),
        AttachmentData("очень длинное имя файла " * 5 + ".txt", "Text/Plain", "текст".encode()),
    ]
    message = parse(build(html=HTML, attachments=attachments))
    assert message.get_content_type() == "multipart/mixed"
    first, *rest = message.iter_parts()
    assert first.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in first.iter_parts()] == ["text/plain", "text/html"]
    assert len(rest) == len(attachments)
    for part, attachment in zip(rest, attachments, strict=True):
        assert part.get_content_disposition() == "attachment"
        assert part.get_filename() == attachment.filename
        assert part.get_content_type() == attachment.content_type.lower()
        assert part.get_payload(decode=True) == attachment.content


def test_cyrillic_filename_uses_rfc2231() -> None:
    attachment = AttachmentData("счёт.pdf", "application/pdf", b"%PDF")
    data = build(attachments=[attachment]).as_bytes()
    assert b"filename*=utf-8''%D1%81%D1%87%D1%91%D1%82.pdf" in data


def test_attachment_with_text_only_wraps_text_in_mixed() -> None:
    message = parse(build(attachments=[AttachmentData("a.bin", "application/octet-stream", b"")]))
    assert message.get_content_type() == "multipart/mixed"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "application/octet-stream",
    ]


def test_bcc_is_only_in_the_envelope() -> None:
    hidden = Address("hidden@example.com", "Скрытый")
    outgoing = build(bcc=[hidden])
    message = parse(outgoing)
    assert "Bcc" not in message
    assert b"hidden@example.com" not in outgoing.as_bytes()
    assert outgoing.recipients == ("ivan@example.com", "hidden@example.com")


def test_recipients_are_deduplicated_across_to_cc_bcc() -> None:
    outgoing = build(
        to=[IVAN, Address("b@example.com")],
        cc=[Address("IVAN@example.com"), Address("c@example.com")],
        bcc=[Address("b@example.com"), Address("d@example.com")],
    )
    assert outgoing.recipients == (
        "ivan@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    )


def test_cc_and_reply_to_headers_only_when_present() -> None:
    plain = parse(build())
    assert "Cc" not in plain
    assert "Reply-To" not in plain
    message = parse(
        build(cc=[Address("c@example.com", "Doe, Jane")], reply_to=[Address("help@example.com")])
    )
    assert message["Cc"].addresses[0].display_name == "Doe, Jane"
    assert message["Cc"].addresses[0].addr_spec == "c@example.com"
    assert message["Reply-To"] == "help@example.com"


def test_many_recipients_fold_into_short_lines() -> None:
    to = [Address(f"user{n}@example.com", f"Пользователь номер {n}") for n in range(30)]
    outgoing = build(to=to)
    header_block = outgoing.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in header_block.split(b"\r\n"))
    parsed = parse(outgoing)["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in parsed] == [
        (a.display_name, a.addr_spec) for a in to
    ]


def test_idn_addresses_are_ascii_in_headers_and_envelope() -> None:
    sender = parse_address("Магазин <shop@пример.рф>", field="from")
    recipient = parse_address("user@пример.рф", field="to")
    outgoing = build(sender=sender, to=[recipient])
    assert outgoing.envelope_from == "shop@xn--e1afmkfd.xn--p1ai"
    assert outgoing.recipients == ("user@xn--e1afmkfd.xn--p1ai",)
    assert outgoing.message_id == "<01HZXJ8K3M@xn--e1afmkfd.xn--p1ai>"
    assert not outgoing.requires_smtputf8
    assert outgoing.as_bytes().isascii()
    message = parse(outgoing)
    assert message["From"].addresses[0].addr_spec == "shop@xn--e1afmkfd.xn--p1ai"


def test_non_ascii_local_part_needs_smtputf8() -> None:
    outgoing = build(to=[parse_address("почта@пример.рф", field="to")])
    assert outgoing.requires_smtputf8
    assert outgoing.recipients == ("почта@пример.рф",)
    data = outgoing.as_bytes()
    assert "To: почта@пример.рф\r\n".encode() in data
    # message_from_bytes reads headers as ASCII; RFC 6532 headers are UTF-8 text.
    message = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "почта@пример.рф"
    assert message["Subject"] == SUBJECT


def test_envelope_comes_from_arguments_not_headers() -> None:
    outgoing = build(headers={"X-To": "attacker@example.com"})
    assert outgoing.recipients == ("ivan@example.com",)
    assert outgoing.envelope_from == "noreply@example.com"


def test_custom_headers_are_written() -> None:
    message = parse(build(headers={"X-Campaign": "весна", "X-Notification-Id": "n-1"}))
    assert message["X-Campaign"] == "весна"
    assert message["X-Notification-Id"] == "n-1"


def test_date_header_uses_the_given_time() -> None:
    when = datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=3)))
    assert parse(build(date=when))["Date"].datetime == when


def test_date_defaults_to_now_with_timezone() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    value = parse(build())["Date"].datetime
    assert value.tzinfo is not None
    assert before <= value <= datetime.now(UTC)


def test_naive_date_is_rejected() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        build(date=datetime(2024, 5, 17, 12, 30))
    assert excinfo.value.field == "date"


def test_message_id_is_deterministic_per_notification() -> None:
    first = build(notification_id="n-1")
    again = build(notification_id="n-1", subject="другое")
    other = build(notification_id="n-2")
    assert first.message_id == again.message_id == "<n-1@example.com>"
    assert other.message_id != first.message_id
    assert parse(first)["Message-ID"] == first.message_id


def test_message_id_domain_override() -> None:
    assert build(domain="mail.example.org").message_id == "<01HZXJ8K3M@mail.example.org>"


@pytest.mark.parametrize(
    ("notification_id", "expected"),
    [
        ("abc-123", "<abc-123@example.com>"),
        ("a b", "<a%20b@example.com>"),
        ("a%20b", "<a%2520b@example.com>"),
        ("..x..", "<%2E%2Ex%2E%2E@example.com>"),
        ("id<@>", "<id%3C%40%3E@example.com>"),
        ("ид", "<%D0%B8%D0%B4@example.com>"),
    ],
)
def test_make_message_id_escapes_unsafe_characters(notification_id: str, expected: str) -> None:
    message_id = make_message_id(notification_id, "example.com")
    assert message_id == expected
    message = EmailMessage(policy=email.policy.default)
    message["Message-ID"] = message_id
    assert message["Message-ID"].defects == ()


def test_make_message_id_hashes_long_ids_deterministically() -> None:
    long_id = "x" * 500
    message_id = make_message_id(long_id, "example.com")
    assert message_id == make_message_id(long_id, "example.com")
    assert len(message_id) < 100
    assert message_id != make_message_id("x" * 501, "example.com")


def test_make_message_id_idn_domain() -> None:
    assert make_message_id("n", "пример.рф") == "<n@xn--e1afmkfd.xn--p1ai>"


@pytest.mark.parametrize("domain", ["", "bad domain", "-x.com", "a..b"])
def test_make_message_id_rejects_bad_domain(domain: str) -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        make_message_id("n", domain)
    assert excinfo.value.field == "domain"


def test_make_message_id_rejects_empty_id() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        make_message_id("", "example.com")
    assert excinfo.value.field == "notification_id"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "Hi\nthere"}, "subject"),
        ({"headers": {"X-Foo": "1\r\nBcc: victim@example.com"}}, "headers.X-Foo"),
        ({"sender": Address("a@example.com", "Evil\r\nBcc: v@example.com")}, "sender.display_name"),
        ({"to": [IVAN, Address("b@example.com", "B\nX: y")]}, "to[1].display_name"),
        ({"cc": [Address("c@example.com\r\nBcc: v@example.com")]}, "cc[0]"),
        ({"bcc": [Address("d@example.com\n")]}, "bcc[0]"),
        ({"reply_to": [Address("r@example.com", "R\r")]}, "reply_to[0].display_name"),
        (
            {"attachments": [AttachmentData("a\r\nb.txt", "text/plain", b"x")]},
            "attachments[0].filename",
        ),
    ],
)
def test_header_injection_is_rejected(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(HeaderInjection) as excinfo:
        build(**overrides)
    assert excinfo.value.field == field


def test_non_x_custom_header_is_rejected() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        build(headers={"Bcc": "victim@example.com"})
    assert excinfo.value.field == "headers.Bcc"


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        (AttachmentData("a.txt", "text", b"x"), "attachments[0].content_type"),
        (AttachmentData("a.txt", "text/pl ain", b"x"), "attachments[0].content_type"),
        (AttachmentData("a.eml", "message/rfc822", b"x"), "attachments[0].content_type"),
        (AttachmentData("a", "multipart/mixed", b"x"), "attachments[0].content_type"),
        (AttachmentData(" ", "text/plain", b"x"), "attachments[0].filename"),
    ],
)
def test_bad_attachments_are_rejected(attachment: AttachmentData, field: str) -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        build(attachments=[attachment])
    assert excinfo.value.field == field


@pytest.mark.parametrize("empty", [(), []])
def test_a_recipient_is_required(empty: Sequence[Address]) -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        build(to=empty)
    assert excinfo.value.field == "to"


def test_bcc_only_message_is_allowed() -> None:
    outgoing = build(to=[], bcc=[IVAN])
    assert "To" not in parse(outgoing)
    assert outgoing.recipients == ("ivan@example.com",)


def test_unencodable_body_is_rejected() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        build(html="<p>\ud800</p>")
    assert excinfo.value.field == "html"


def test_message_object_is_usable_and_serializes_the_same() -> None:
    outgoing = build(html=HTML)
    assert outgoing.message["Subject"] == SUBJECT
    assert outgoing.as_bytes() == outgoing.as_bytes()
    assert outgoing.message.as_bytes() == outgoing.as_bytes()

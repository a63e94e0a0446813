"""The development inbox end to end: real SMTP in, real HTTP out, a Maildir on disk."""

from __future__ import annotations

import logging
import mailbox
import smtplib
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import httpx
import pytest

from notifier.devinbox import DevInbox, DevInboxError
from tests.support.ports import free_port

SUBJECT = "Привет, мир: отчёт готов"
SENDER = "sender@example.com"
RECIPIENTS = ["anna@example.com", "boris@example.org"]
ATTACHMENT = b"%PDF-1.4\x00\x01\x02 binary \xff\xfe tail"
ATTACHMENT_NAME = "отчёт.pdf"
HTML = (
    '<html><body><h1 id="hello">Здравствуйте</h1>'
    "<script>alert('pwned')</script>"
    '<img src=x onerror="alert(2)"></body></html>'
)

InboxFactory = Callable[..., DevInbox]


@pytest.fixture
def make_inbox(tmp_path: Path) -> Iterator[InboxFactory]:
    """Start DevInbox instances on free ports (or given ones); all are stopped afterwards."""
    started: list[DevInbox] = []

    def make(*, maildir: Path | None = None, smtp_port: int = 0, http_port: int = 0) -> DevInbox:
        inbox = DevInbox(
            maildir=maildir or tmp_path / "maildir",
            smtp_port=smtp_port or free_port(),
            http_port=http_port or free_port(),
        )
        inbox.start()
        started.append(inbox)
        return inbox

    yield make
    for inbox in started:
        inbox.stop()


def build_message(subject: str = SUBJECT) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Отправитель <{SENDER}>"
    message["To"] = ", ".join(RECIPIENTS)
    message["Subject"] = subject
    message.set_content("Здравствуйте!\nThe report is attached.\n")
    message.add_alternative(HTML, subtype="html")
    message.add_attachment(
        ATTACHMENT, maintype="application", subtype="pdf", filename=ATTACHMENT_NAME
    )
    return message


def send(inbox: DevInbox, message: EmailMessage) -> bytes:
    """Send ``message`` over SMTP; returns the exact bytes that went over the wire as DATA."""
    raw = message.as_bytes(policy=SMTP)
    with smtplib.SMTP(inbox.smtp_host, inbox.smtp_port, timeout=10) as client:
        refused = client.sendmail(SENDER, RECIPIENTS, raw)
    assert refused == {}
    return raw


def client_for(inbox: DevInbox) -> httpx.Client:
    return httpx.Client(base_url=inbox.http_url, timeout=10)


def decoded(header_value: str) -> str:
    return str(make_header(decode_header(header_value)))


def test_received_message_in_mailhog_api(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    raw = send(inbox, build_message())

    with client_for(inbox) as http:
        listing = http.get("/api/v2/messages").json()
        assert (listing["total"], listing["count"], listing["start"]) == (1, 1, 0)
        item = listing["items"][0]
        assert item["From"] == {
            "Relays": None,
            "Mailbox": "sender",
            "Domain": "example.com",
            "Params": "",
        }
        assert [(to["Mailbox"], to["Domain"]) for to in item["To"]] == [
            ("anna", "example.com"),
            ("boris", "example.org"),
        ]
        headers = item["Content"]["Headers"]
        assert decoded(headers["Subject"][0]) == SUBJECT
        assert decoded(headers["From"][0]) == f"Отправитель <{SENDER}>"
        assert item["Content"]["Size"] == len(raw)
        assert item["Raw"]["From"] == SENDER
        assert item["Raw"]["To"] == RECIPIENTS
        assert item["Raw"]["Data"].encode() == raw
        assert raw.endswith(item["Content"]["Body"].encode())
        assert item["Created"].endswith("Z")
        parts = item["MIME"]["Parts"]
        content_types = [part["Headers"]["Content-Type"][0].split(";")[0] for part in parts]
        assert content_types == ["multipart/alternative", "application/pdf"]
        assert len(parts[1]["MIME"] or []) == 0
        assert len(parts[0]["MIME"]["Parts"]) == 2

        single = http.get(f"/api/v1/messages/{item['ID']}")
        assert single.status_code == 200
        assert single.json() == item
        assert http.get("/api/v1/messages/no-such-id").status_code == 404


def test_api_pages_newest_first(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    for n in range(3):
        send(inbox, build_message(subject=f"message {n}"))

    with client_for(inbox) as http:
        page = http.get("/api/v2/messages", params={"start": 1, "limit": 1}).json()
        assert (page["total"], page["count"], page["start"]) == (3, 1, 1)
        assert page["items"][0]["Content"]["Headers"]["Subject"] == ["message 1"]
        everything = http.get("/api/v2/messages").json()["items"]
        subjects = [item["Content"]["Headers"]["Subject"][0] for item in everything]
        assert subjects == ["message 2", "message 1", "message 0"]
        assert http.get("/api/v2/messages", params={"start": -1}).status_code == 422


def test_html_pages_and_attachment(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    sent = send(inbox, build_message())

    with client_for(inbox) as http:
        listing = http.get("/")
        assert listing.status_code == 200
        assert SUBJECT in listing.text
        assert SENDER in listing.text

        message_id = http.get("/api/v2/messages").json()["items"][0]["ID"]
        page = http.get(f"/messages/{message_id}")
        assert page.status_code == 200
        assert SUBJECT in page.text
        assert "script-src 'none'" in page.headers["content-security-policy"]

        # The mail's markup appears only escaped, inside the sandboxed iframe's srcdoc.
        assert "<script" not in page.text.lower()
        assert page.text.count('<iframe class="html" sandbox srcdoc="') == 1
        before, rest = page.text.split('srcdoc="', 1)
        srcdoc, after = rest.split('"', 1)
        assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in srcdoc
        assert "<" not in srcdoc and ">" not in srcdoc
        assert "onerror" not in before + after
        assert "Здравствуйте!\nThe report is attached." in page.text  # the text part

        assert f"/messages/{message_id}/attachments/0" in page.text
        download = http.get(f"/messages/{message_id}/attachments/0")
        assert download.status_code == 200
        assert download.content == ATTACHMENT
        assert download.headers["content-type"] == "application/pdf"
        disposition = download.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert "filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf" in disposition
        assert http.get(f"/messages/{message_id}/attachments/1").status_code == 404

        raw = http.get(f"/messages/{message_id}/raw")
        assert raw.headers["content-type"].startswith("text/plain")
        assert raw.content == sent


def test_messages_survive_restart_and_delete_all(make_inbox: InboxFactory, tmp_path: Path) -> None:
    maildir = tmp_path / "persistent"
    first = make_inbox(maildir=maildir)
    send(first, build_message())
    with client_for(first) as http:
        before = http.get("/api/v2/messages").json()["items"]
    first.stop()

    # The same ports again: stop() must have freed them.
    second = make_inbox(maildir=maildir, smtp_port=first.smtp_port, http_port=first.http_port)
    with client_for(second) as http:
        after = http.get("/api/v2/messages").json()["items"]
        assert after == before
        assert http.delete("/api/v1/messages").status_code == 200
        assert http.get("/api/v2/messages").json()["total"] == 0
        assert SUBJECT not in http.get("/").text
    assert list((maildir / "new").iterdir()) == []
    assert list((maildir / "cur").iterdir()) == []


def test_delete_all_button(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    send(inbox, build_message())
    with client_for(inbox) as http:
        assert 'action="/delete-all"' in http.get("/").text
        cross_site = http.post("/delete-all", headers={"Origin": "http://evil.example"})
        assert cross_site.status_code == 403
        assert http.get("/api/v2/messages").json()["total"] == 1
        response = http.post("/delete-all", follow_redirects=True)
        assert response.status_code == 200
        assert "No messages yet." in response.text
        assert http.get("/api/v2/messages").json()["total"] == 0


def test_each_message_is_logged(make_inbox: InboxFactory, caplog: pytest.LogCaptureFixture) -> None:
    inbox = make_inbox()
    with caplog.at_level(logging.INFO, logger="notifier.devinbox"):
        send(inbox, build_message())
    received = [r.getMessage() for r in caplog.records if "received" in r.getMessage()]
    assert len(received) == 1
    assert SUBJECT in received[0]
    assert "anna@example.com, boris@example.org" in received[0]


def test_port_in_use_fails_and_frees_the_other_port(
    make_inbox: InboxFactory, tmp_path: Path
) -> None:
    running = make_inbox()
    smtp_port = free_port()
    clash = DevInbox(maildir=tmp_path / "other", smtp_port=smtp_port, http_port=running.http_port)
    with pytest.raises(DevInboxError, match="HTTP"):
        clash.start()
    assert not clash.running
    # The SMTP port the failed start had bound is free again.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", smtp_port))


def test_cli_rejects_bad_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifier.devinbox", "--maildir", "x", "--smtp-port", "abc"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "not a port number: 'abc'" in result.stderr


def test_smtp_port_in_use_fails(make_inbox: InboxFactory, tmp_path: Path) -> None:
    running = make_inbox()
    clash = DevInbox(maildir=tmp_path / "other", smtp_port=running.smtp_port, http_port=free_port())
    with pytest.raises(DevInboxError, match="SMTP"):
        clash.start()
    assert not clash.running


def test_message_put_in_the_maildir_by_another_program(
    make_inbox: InboxFactory, tmp_path: Path
) -> None:
    maildir = tmp_path / "shared"
    inbox = make_inbox(maildir=maildir)
    mailbox.Maildir(maildir, create=False).add(
        b"From: Someone <someone@example.com>\r\n"
        b"To: Anna <anna@example.com>, bob@example.org\r\n"
        b"Subject: dropped in\r\n\r\nhello\r\n"
    )
    with client_for(inbox) as http:
        item = http.get("/api/v2/messages").json()["items"][0]
    assert item["Raw"]["From"] == "someone@example.com"
    assert item["Raw"]["To"] == ["anna@example.com", "bob@example.org"]
    assert item["Content"]["Headers"]["Subject"] == ["dropped in"]
    assert item["Content"]["Body"] == "hello\r\n"

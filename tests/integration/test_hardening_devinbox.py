"""Issue 14 item 10: the dev inbox refuses Origin: null and fetches nothing a mail links to."""

from __future__ import annotations

import http.server
import smtplib
import subprocess
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from notifier.devinbox import DevInbox
from tests.integration.test_devinbox_browser import chromium
from tests.support.ports import free_port


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[DevInbox]:
    started = DevInbox(maildir=tmp_path / "mail", smtp_port=free_port(), http_port=free_port())
    started.start()
    yield started
    started.stop()


def deliver(inbox: DevInbox, html: str = "<p>hello</p>") -> None:
    message = EmailMessage()
    message["From"] = "notifier@example.com"
    message["To"] = "ada@example.com"
    message["Subject"] = "pixel"
    message.set_content("hello")
    message.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", inbox.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)


def test_delete_all_refuses_origin_null(inbox: DevInbox) -> None:
    deliver(inbox)
    with httpx.Client(base_url=inbox.http_url, timeout=10) as http:
        assert http.post("/delete-all", headers={"Origin": "null"}).status_code == 403
        assert http.get("/api/v2/messages").json()["total"] == 1


def test_message_page_policy_blocks_remote_content_and_framing(inbox: DevInbox) -> None:
    deliver(inbox)
    with httpx.Client(base_url=inbox.http_url, timeout=10) as http:
        message_id = http.get("/api/v2/messages").json()["items"][0]["ID"]
        policy = http.get(f"/messages/{message_id}").headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives["default-src"] == ["'none'"]
    assert directives["img-src"] == ["data:", "cid:"]
    assert directives["frame-ancestors"] == ["'none'"]


class _Pixel(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Pixel.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a")

    def log_message(self, *args: object) -> None:
        pass


def test_opening_a_message_in_chromium_fetches_no_tracking_pixel(
    inbox: DevInbox, tmp_path: Path
) -> None:
    browser = chromium()
    pixel = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Pixel)
    threading.Thread(target=pixel.serve_forever, daemon=True).start()
    _Pixel.hits.clear()
    try:
        url = f"http://127.0.0.1:{pixel.server_address[1]}/pixel.gif"
        deliver(inbox, f'<p>hi</p><img src="{url}" width="1" height="1">')
        with httpx.Client(base_url=inbox.http_url, timeout=10) as http_client:
            message_id = http_client.get("/api/v2/messages").json()["items"][0]["ID"]
        result = subprocess.run(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=3000", "--dump-dom",
                f"{inbox.http_url}/messages/{message_id}",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )  # fmt: skip
    finally:
        pixel.shutdown()
        pixel.server_close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pixel" in result.stdout  # the page itself rendered
    assert _Pixel.hits == []

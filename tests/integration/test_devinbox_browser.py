"""The dev inbox page in a real headless Chromium shows a received message's subject."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest

from notifier.devinbox import DevInbox
from tests.support.ports import free_port


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (make test installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_inbox_page_lists_the_subject_in_chromium(tmp_path: Path) -> None:
    browser = chromium()
    inbox = DevInbox(maildir=tmp_path / "mail", smtp_port=free_port(), http_port=free_port())
    inbox.start()
    try:
        message = EmailMessage()
        message["From"] = "notifier@example.com"
        message["To"] = "ada@example.com"
        message["Subject"] = "Проверка браузером 42"
        message.set_content("hello")
        with smtplib.SMTP("127.0.0.1", inbox.smtp_port) as smtp:
            smtp.send_message(message)
        result = subprocess.run(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom", inbox.http_url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )  # fmt: skip
    finally:
        inbox.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Проверка браузером 42" in result.stdout

"""The seed design's tasks.py (../shared/seed/celery_worker.md), kept as the baseline.

Taken literally (same app name, broker and backend, same settings, same task names and
arguments) except that ``send_email_task`` really sends instead of ``time.sleep(10)``: the
way the seed would be completed, with a new event loop (``asyncio.run``) and a new SMTP
connection for every message. Run from this directory: ``celery -A tasks worker -l info``.
"""

import asyncio
import os
from email.message import EmailMessage

import aiosmtplib
from celery import Celery

REDIS_URL = os.getenv("REDIS_URL", "redis://redis:6379/0")
SMTP_HOST = os.getenv("SMTP_HOST", "localhost")
SMTP_PORT = int(os.getenv("SMTP_PORT", "25"))
MAIL_FROM = os.getenv("MAIL_FROM", "noreply@example.com")

app = Celery("tasks", broker=REDIS_URL, backend=REDIS_URL)

app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="Europe/Moscow",
    enable_utc=True,
    task_track_started=True,
    result_expires=3600,
)


@app.task(bind=True, name="add_numbers")
def add_numbers(self, x: int, y: int) -> int:
    print(f"Task {self.request.id}: Adding {x} + {y}")
    result = x + y
    print(f"Task {self.request.id}: Result is {result}")
    return result


async def _send(message: EmailMessage) -> None:
    await aiosmtplib.send(message, hostname=SMTP_HOST, port=SMTP_PORT)


@app.task(name="send_email_task")
def send_email_task(email_to: str, subject: str, body: str):
    print(f"Sending email to {email_to} with subject '{subject}'...")
    message = EmailMessage()
    message["From"] = MAIL_FROM
    message["To"] = email_to
    message["Subject"] = subject
    message.set_content(body)
    asyncio.run(_send(message))
    print(f"Email to {email_to} sent.")
    return {"status": "success", "email": email_to}

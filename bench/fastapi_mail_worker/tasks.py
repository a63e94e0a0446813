"""fastapi-mail inside a Celery task: what a user would most likely pick instead of notifier.

Follows fastapi-mail's documentation: a ``ConnectionConfig``, a ``MessageSchema`` with a
``template_body`` rendered from ``TEMPLATE_FOLDER``, and ``await FastMail(conf).send_message``
(run with ``asyncio.run`` from the synchronous Celery task). Run from this directory:
``celery -A tasks worker -l info``.
"""

import asyncio
import os
from pathlib import Path

from celery import Celery
from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType

REDIS_URL = os.getenv("REDIS_URL", "redis://localhost:6379/0")

app = Celery("tasks", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="Europe/Moscow",
    enable_utc=True,
)

conf = ConnectionConfig(
    MAIL_USERNAME="",
    MAIL_PASSWORD="",
    MAIL_FROM=os.getenv("MAIL_FROM_ADDRESS", "notifier@example.com"),
    MAIL_FROM_NAME="Notifier",
    MAIL_PORT=int(os.getenv("SMTP_PORT", "25")),
    MAIL_SERVER=os.getenv("SMTP_HOST", "localhost"),
    MAIL_STARTTLS=False,
    MAIL_SSL_TLS=False,
    USE_CREDENTIALS=False,
    VALIDATE_CERTS=False,
    TEMPLATE_FOLDER=Path(__file__).parent / "templates",
)


@app.task(name="send_welcome_email")
def send_welcome_email(email_to: str, name: str, login_url: str) -> dict:
    message = MessageSchema(
        subject="Welcome to Notifier",
        recipients=[email_to],
        template_body={"name": name, "login_url": login_url, "app_name": "Notifier"},
        subtype=MessageType.html,
    )
    fm = FastMail(conf)
    asyncio.run(fm.send_message(message, template_name="welcome.html"))
    return {"status": "success", "email": email_to}

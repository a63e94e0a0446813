"""The seed design's FastAPI endpoint: ``send_task`` called inside an async endpoint.

Its publisher is the seed's ``celery_client.py`` as written (broker and result backend on
``REDIS_URL``, the same settings). Serve with ``uvicorn bench.seed_api:app``.
"""

import os

from celery import Celery
from fastapi import FastAPI

REDIS_URL = os.getenv("REDIS_URL", "redis://redis:6379/0")

celery_app = Celery("tasks_client", broker=REDIS_URL, backend=REDIS_URL)
celery_app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="Europe/Moscow",
    enable_utc=True,
    task_track_started=True,
    result_expires=3600,
)


def call_send_email(email_to: str, subject: str, body: str):
    return celery_app.send_task("send_email_task", args=[email_to, subject, body])


app = FastAPI()


@app.post("/api/v1/users/register")
async def register_user(user_data: dict):
    task_result = call_send_email(user_data["email"], "Welcome!", "Thanks for registering!")
    return {"message": "User registered, welcome email is being sent.", "task_id": task_result.id}

# The original design's publisher (shared/seed/celery_worker.md, "celery_client.py"),
# kept verbatim: tests import it with only REDIS_URL set in the environment.
import os

from celery import Celery

REDIS_URL = os.getenv('REDIS_URL', 'redis://redis:6379/0')

# Этот экземпляр используется только для ОТПРАВКИ задач, а не для выполнения.
# Имена задач ('tasks.add_numbers') должны совпадать с теми, что зарегистрированы в worker'е.
celery_app = Celery('tasks_client', broker=REDIS_URL, backend=REDIS_URL) # Имя может быть любым, но broker/backend важны

celery_app.conf.update(
    task_serializer='json',
    accept_content=['json'],
    result_serializer='json',
    timezone='Europe/Moscow',
    enable_utc=True,
    task_track_started=True, # Позволяет отслеживать статус
    result_expires=3600,
)

# Функции-обертки для вызова задач
def call_add_numbers(x: int, y: int):
    # tasks.add_numbers - это <module_name>.<task_name> из celery_worker/tasks.py
    # или явное имя, указанное в @app.task(name='add_numbers')
    return celery_app.send_task('add_numbers', args=[x, y])

def call_send_email(email_to: str, subject: str, body: str):
    return celery_app.send_task('send_email_task', args=[email_to, subject, body])


"""The Celery worker: the app, its tasks, the per-process runtime, the dispatcher and recovery."""

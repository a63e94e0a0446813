"""Composing an email from a request: addresses, request models, templates, rendering, MIME.

Pure code: no Redis, no SMTP, no Celery.
"""

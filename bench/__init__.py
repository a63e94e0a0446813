"""Benchmarks of notifier against the seed design, fastapi-mail and the raw SMTP ceiling."""

"""The ``notifier`` command: run the worker, the API and the dev stack; check health."""

from __future__ import annotations

import sys
import time
from typing import Any, NoReturn

import click

from notifier.errors import ConfigurationError, NotifierError
from notifier.settings import Settings, load_settings

__all__ = ["main"]


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigurationError as exc:
        fail(str(exc), 2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="notifier")
def main() -> None:
    """notifier: event-driven email notifications over Celery, Redis and SMTP."""


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker (extra arguments go to `celery worker`, e.g. -c 4)."""
    settings = settings_or_exit()
    from notifier.startup import check_worker_config

    try:
        check_worker_config(settings)
    except ConfigurationError as exc:
        fail(f"cannot start the worker: {exc}", 2)
    from notifier import app

    args = ["worker", *celery_args]
    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in celery_args):
        args += ["--loglevel", settings.log_level]
    if "-E" not in celery_args and "--task-events" not in celery_args:
        args.append("-E")
    app.worker_main(args)


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: API_HOST).")
@click.option("--port", default=None, type=int, help="Port (default: API_PORT).")
@click.option("--workers", default=1, show_default=True, help="Uvicorn worker processes.")
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
def api(host: str | None, port: int | None, workers: int, reload: bool) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    settings = settings_or_exit()
    from api.main import create_app

    try:
        create_app(settings)  # refuse bad configuration before binding anything
    except ConfigurationError as exc:
        fail(f"cannot start the API: {exc}", 2)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        reload=reload,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


@main.command()
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for a worker.")
def health(timeout: float) -> None:
    """Round-trip add_numbers(2, 3) through the broker and a worker."""
    import redis
    from celery import Celery

    settings = settings_or_exit()
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        fail(f"Redis at {settings.redis_url} is unreachable: {exc}")

    publisher = Celery("notifier-health", broker=settings.redis_url, backend=settings.redis_url)
    publisher.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    started = time.perf_counter()
    # expires: a worker that shows up later discards the probe instead of running it.
    result = publisher.send_task("add_numbers", args=[2, 3], expires=timeout)
    try:
        value = result.get(timeout=timeout)
    except Exception as exc:
        result.forget()
        if type(exc).__name__ == "TimeoutError":
            fail(f"no worker answered within {timeout:g}s (is `notifier worker` running?)")
        fail(f"the health task failed: {exc}")
    finally:
        publisher.close()
    elapsed = (time.perf_counter() - started) * 1000
    if value != 5:
        fail(f"add_numbers(2, 3) returned {value!r}")
    click.echo(f"ok: add_numbers(2, 3) = 5 in {elapsed:.1f} ms")


@main.command()
@click.option("--api-port", default=8000, show_default=True)
@click.option("--smtp-port", default=1025, show_default=True, help="Dev inbox SMTP port.")
@click.option("--inbox-port", default=8025, show_default=True, help="Dev inbox web port.")
@click.option("--data-dir", default=".notifier", show_default=True, help="Redis and Maildir data.")
def dev(api_port: int, smtp_port: int, inbox_port: int, data_dir: str) -> None:
    """Run everything on this machine: Redis, a worker, the API and the dev inbox."""
    from pathlib import Path

    from notifier.devstack import DevStack

    try:
        stack = DevStack(
            data_dir=Path(data_dir),
            api_port=api_port,
            smtp_port=smtp_port,
            inbox_port=inbox_port,
        )
        sys.exit(stack.run())
    except NotifierError as exc:
        fail(str(exc), 2)


if __name__ == "__main__":  # pragma: no cover
    main()

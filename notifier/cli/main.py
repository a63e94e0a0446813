"""The ``notifier`` command: run the worker, the API and the dev stack; check health."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from notifier.cli.common import fail, settings_or_exit
from notifier.errors import ConfigurationError, NotifierError

__all__ = ["main"]

T = TypeVar("T")


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
    """Start a Celery worker (extra arguments go to `celery worker`, e.g. -c 4).

    Task events for Flower are on unless WORKER_EVENTS=false.
    """
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
    if settings.worker_events and not {"-E", "--task-events"} & set(celery_args):
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

    from notifier.observability.logs import uvicorn_log_config
    from notifier.startup import check_api_config

    settings = settings_or_exit()
    try:
        check_api_config(settings, host or settings.api_host)  # before binding anything
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
        log_config=uvicorn_log_config(settings),
        proxy_headers=True,
    )


@main.command()
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for a worker.")
def health(timeout: float) -> None:
    """Round-trip add_numbers(2, 3) through the broker and a worker."""
    from celery import Celery

    from notifier.messages import ADD_NUMBERS_TASK
    from notifier.storage import connection
    from notifier.storage.sink import check_broker_config, publisher_config

    settings = settings_or_exit()
    try:
        connection.check_redis(settings)
        check_broker_config(settings)  # RabbitMQ (BROKER_URL): certificate and login
    except ConfigurationError as exc:
        fail(str(exc))

    publisher = Celery("notifier-health")
    publisher.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        **publisher_config(settings, connection.celery_client_config(settings)),
    )
    started = time.perf_counter()
    # expires: a worker that shows up later discards the probe instead of running it.
    result = publisher.send_task(ADD_NUMBERS_TASK, args=[2, 3], expires=timeout)
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

    from notifier.cli.devstack import DevStack

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


# Operator commands. Each prints one line on stderr and exits non-zero on bad input or an
# unreachable Redis, never a traceback.


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except NotifierError as exc:
        from notifier.cli.ops import describe_error

        fail(describe_error(exc))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@main.command()
@click.option("--timeout", default=1.0, show_default=True, help="Seconds to wait for workers.")
def status(timeout: float) -> None:
    """Queue depth, scheduled sends, workers alive and notifications by status."""
    from notifier.cli import ops as cli_ops

    settings = settings_or_exit()
    report = _run(cli_ops.read_status(settings))
    workers = cli_ops.ping_workers(settings, timeout=timeout)
    click.echo(f"queue depth:  {report.queue_depth}")
    click.echo(f"scheduled:    {report.scheduled}")
    if workers:
        click.echo(f"workers:      {len(workers)} alive ({', '.join(workers)})")
    else:
        click.echo(f"workers:      none answered within {timeout:g}s")
    counts = " ".join(f"{name}={count}" for name, count in report.counts.items())
    click.echo(f"notifications: {counts}")


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--show-recipients",
    is_flag=True,
    help="Print recipient addresses in clear (masked by default) to act on them.",
)
def failed(limit: int, show_recipients: bool) -> None:
    """List the dead letters (failed notifications), newest first."""
    from notifier.cli import ops as cli_ops

    settings = settings_or_exit()
    rows = _run(cli_ops.list_failed(settings, limit=limit, show_recipients=show_recipients))
    if not rows:
        click.echo("no failed notifications")
        return
    for row in rows:
        click.echo(f"{row.id}  {_when(row.failed_at)}  {row.template}  {row.to}  {row.reason}")


@main.command()
@click.argument("notification_id", required=False)
@click.option("--all-failed", is_flag=True, help="Requeue every failed notification.")
def retry(notification_id: str | None, all_failed: bool) -> None:
    """Queue a failed notification (or all of them) again, with a fresh attempt budget."""
    from notifier.cli import ops as cli_ops

    if bool(notification_id) == all_failed:
        fail("give a notification ID or --all-failed (not both)", 2)
    settings = settings_or_exit()
    if notification_id:
        _run(cli_ops.retry_notification(settings, notification_id))
        click.echo(f"requeued {notification_id}")
        return
    ids = _run(cli_ops.retry_all_failed(settings))
    click.echo(f"requeued {len(ids)} failed notification(s)")


@main.command()
@click.argument("template")
@click.option("--context", "context_json", default="{}", help="Template variables as JSON.")
@click.option("--locale", default=None, help="e.g. ru or ru-RU (default: DEFAULT_LOCALE).")
@click.option("--open", "open_html", is_flag=True, help="Write the HTML to a file (and open it).")
def render(template: str, context_json: str, locale: str | None, open_html: bool) -> None:
    """Preview TEMPLATE: subject and text on the terminal, HTML with --open."""
    from notifier.cli import ops as cli_ops

    settings = settings_or_exit()
    try:
        context = cli_ops.parse_context(context_json)
        resolved, email = cli_ops.render_preview(settings, template, context, locale=locale)
    except NotifierError as exc:
        fail(cli_ops.describe_error(exc))
    click.echo(f"Subject: {email.subject}")
    click.echo(f"Locale:  {resolved}")
    click.echo("")
    click.echo(email.text.rstrip("\n"))
    if open_html:
        path = cli_ops.open_html_preview(email)
        click.echo("")
        click.echo(f"HTML preview: {path}")


@main.command()
@click.option("--to", "to", multiple=True, required=True, help="Recipient (repeatable).")
@click.option("--template", required=True, help="Template name.")
@click.option("--context", "context_json", default="{}", help="Template variables as JSON.")
@click.option("--locale", default=None, help="e.g. ru (default: DEFAULT_LOCALE).")
def send(to: tuple[str, ...], template: str, context_json: str, locale: str | None) -> None:
    """Validate and queue one notification; prints its id."""
    from notifier.cli import ops as cli_ops

    settings = settings_or_exit()
    try:
        context = cli_ops.parse_context(context_json)
    except NotifierError as exc:
        fail(cli_ops.describe_error(exc))
    notification_id = _run(
        cli_ops.send_notification(
            settings, to=list(to), template=template, context=context, locale=locale
        )
    )
    click.echo(notification_id)


def _add_suppression_commands() -> None:
    # The suppression list's and bounce receiver's commands live in their own module.
    from notifier.cli.suppressions import bounces, suppressions

    main.add_command(suppressions)
    main.add_command(bounces)


_add_suppression_commands()


def _add_deliverability_commands() -> None:
    # DKIM keys and recipient preferences live in their own modules.
    from notifier.cli.dkim import dkim
    from notifier.cli.preferences import preferences

    main.add_command(dkim)
    main.add_command(preferences)


_add_deliverability_commands()


if __name__ == "__main__":  # pragma: no cover
    main()

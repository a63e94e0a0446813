"""``notifier suppressions list|add|remove|import|export``, and ``notifier bounces``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from notifier.bounces import csvfile
from notifier.bounces.csvfile import iso
from notifier.cli.common import address_param, fail, settings_or_exit, with_suppression_store
from notifier.errors import ConfigurationError
from notifier.storage.suppressions import (
    REASONS,
    SuppressionEntry,
    SuppressionStore,
    check_category,
)

__all__ = ["bounces", "suppressions"]

T = TypeVar("T")


def _with_store(operation: Callable[[SuppressionStore], Awaitable[T]]) -> T:
    return with_suppression_store(settings_or_exit(), operation)


def _category(value: str | None) -> str | None:
    try:
        return check_category(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def suppressions() -> None:
    """The suppression list: addresses notifier does not send to."""


@suppressions.command("list")
@click.option("--reason", type=click.Choice(REASONS), default=None)
@click.option("--category", default=None, help="Only this category ('' for none).")
@click.option("--domain", default=None, help="Only addresses at this domain.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--cursor", default=None, help="Continue after a previous page.")
def list_command(
    reason: str | None, category: str | None, domain: str | None, limit: int, cursor: str | None
) -> None:
    """Entries, newest first: address, reason, category, source, created, expires, note."""
    page = _with_store(
        lambda store: store.page(
            limit=limit, cursor=cursor, reason=reason, category=category, domain=domain
        )
    )
    if not page.entries:
        click.echo("the suppression list is empty" if cursor is None else "no more entries")
    for entry in page.entries:
        expires = f" expires {iso(entry.expires)}" if entry.expires else ""
        category_text = f" [{entry.category}]" if entry.category else ""
        note = f"  {entry.note}" if entry.note else ""
        click.echo(
            f"{entry.address}{category_text}  {entry.reason}  {entry.source}  "
            f"{iso(entry.created)}{expires}{note}"
        )
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@suppressions.command("add")
@click.argument("address")
@click.option("--reason", type=click.Choice(REASONS), default="manual", show_default=True)
@click.option("--category", default=None, help="Only this category of mail.")
@click.option("--expires", default=None, help="ISO 8601 time after which the entry lapses.")
@click.option("--note", default="", help="Why.")
def add_command(
    address: str, reason: str, category: str | None, expires: str | None, note: str
) -> None:
    """Stop mail to ADDRESS (replaces an existing entry)."""
    now = time.time()
    expires_at = None
    if expires:
        try:
            expires_at = csvfile.parse_time(expires)
        except ValueError:
            raise click.BadParameter("an ISO 8601 date or time", param_hint="--expires") from None
        if expires_at <= now:
            raise click.BadParameter("must be in the future", param_hint="--expires")
    entry = SuppressionEntry(
        address=address_param(address),
        category=_category(category),
        reason=reason,
        source="cli",
        created=now,
        expires=expires_at,
        note=note,
    )
    created = _with_store(lambda store: store.put(entry))
    click.echo(f"{'added' if created else 'replaced'} {entry.address} ({reason})")


@suppressions.command("remove")
@click.argument("address")
@click.option("--category", default=None)
def remove_command(address: str, category: str | None) -> None:
    """Send to ADDRESS again."""
    normalized, chosen = address_param(address), _category(category)
    if not _with_store(lambda store: store.remove(normalized, chosen)):
        fail(f"{normalized} is not on the suppression list")
    click.echo(f"removed {normalized}")


@suppressions.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8-sig"))
def import_command(source: Any) -> None:
    """Add entries from a CSV file ('-' for stdin); all rows or, if any is bad, none."""
    text = source.read()
    try:
        entries = csvfile.parse_csv(text, source="import:cli", now=time.time())
    except csvfile.InvalidSuppressionCsv as exc:
        for error in exc.errors[:20]:
            click.echo(f"  {error['field']}: {error['message']}", err=True)
        fail(str(exc))
    created = _with_store(lambda store: store.put_many(entries))
    replaced = len(entries) - created
    click.echo(f"imported {len(entries)} entries ({created} new, {replaced} replaced)")


@suppressions.command("export")
@click.argument("target", type=click.File("w", encoding="utf-8"), default="-")
def export_command(target: Any) -> None:
    """Write every entry as CSV (to stdout by default); `import` reads it back."""

    async def collect(store: SuppressionStore) -> list[SuppressionEntry]:
        found: list[SuppressionEntry] = []
        cursor = None
        while True:
            page = await store.page(limit=500, cursor=cursor)
            found.extend(page.entries)
            cursor = page.next_cursor
            if cursor is None:
                return found

    entries = _with_store(collect)
    target.write(csvfile.csv_line(csvfile.CSV_COLUMNS))
    for entry in entries:
        target.write(csvfile.csv_line(csvfile.entry_row(entry)))


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Interface (default: BOUNCE_SMTP_HOST).")
@click.option("--port", default=None, type=int, help="Port (default: BOUNCE_SMTP_PORT).")
@click.pass_context
def bounces(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the bounce receiver: an SMTP server for BOUNCE_DOMAIN's DSNs and ARF reports."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_exit()
    from notifier.bounces.receiver import serve_bounces
    from notifier.observability.logs import configure_logging

    configure_logging(settings)
    click.echo(
        f"bounce receiver for {settings.bounce_domain or '(no BOUNCE_DOMAIN)'} on "
        f"{host or settings.bounce_smtp_host}:{port or settings.bounce_smtp_port}",
        err=True,
    )
    try:
        asyncio.run(serve_bounces(settings, host=host, port=port))
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except OSError as exc:
        fail(f"cannot listen: {exc}", 2)
    except KeyboardInterrupt:
        pass


@bounces.command("unclassified")
@click.argument("mail_id", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def unclassified_command(mail_id: str | None, limit: int) -> None:
    """List inbound mail the receiver kept without applying it, or print one (raw)."""
    if mail_id:
        mail = _with_store(lambda store: store.unclassified_one(mail_id))
        if mail is None:
            fail(f"no kept inbound message {mail_id!r}")
        click.echo(mail.raw)
        return
    kept = _with_store(lambda store: store.unclassified(limit=limit))
    if not kept:
        click.echo("no kept inbound mail")
    for mail in kept:
        click.echo(f"{mail.id}  {iso(mail.received_at)}  from <{mail.mail_from}>  {mail.problem}")

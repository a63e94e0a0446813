"""``notifier preferences show|set``: a recipient's categories, as the preferences API has them."""

from __future__ import annotations

import click

from notifier.cli.common import address_param, fail, with_suppression_store
from notifier.compose.templates import TRANSACTIONAL
from notifier.errors import ConfigurationError
from notifier.settings import load_settings
from notifier.startup import load_renderer
from notifier.storage.suppressions import SuppressionStore
from notifier.unsubscribe.preferences import Preferences, read_preferences, update_preferences

__all__ = ["preferences"]


def _run(
    address: str,
    *,
    subscribe: tuple[str, ...] = (),
    unsubscribe: tuple[str, ...] = (),
    unsubscribed_all: bool | None = None,
) -> Preferences:
    try:
        settings = load_settings()
        known = load_renderer(settings).categories()
    except ConfigurationError as exc:
        fail(str(exc), 2)
    for category in (*subscribe, *unsubscribe):
        if category == TRANSACTIONAL:
            raise click.BadParameter("transactional mail cannot be unsubscribed from")
        if category not in known:
            raise click.BadParameter(
                f"no template declares category {category!r} (known: {', '.join(known)})"
            )
    changes = {**dict.fromkeys(subscribe, True), **dict.fromkeys(unsubscribe, False)}

    async def apply(store: SuppressionStore) -> Preferences:
        if changes or unsubscribed_all is not None:
            return await update_preferences(
                store,
                address,
                categories=changes,
                unsubscribed_all=unsubscribed_all,
                source="cli",
                known=known,
            )
        return await read_preferences(store, address, known)

    return with_suppression_store(settings, apply)


def _show(prefs: Preferences) -> None:
    click.echo(prefs.address)
    for category, receives in prefs.categories.items():
        state = "receives" if receives and not prefs.unsubscribed_all else "unsubscribed"
        click.echo(f"  {category}: {state}")
    if prefs.unsubscribed_all:
        click.echo("  unsubscribed from all categories (transactional mail still goes)")
    if prefs.blocked_by:
        click.echo(f"  no mail at all goes to this address: {prefs.blocked_by}")


@click.group()
def preferences() -> None:
    """Recipient preferences: the categories an address receives."""


@preferences.command("show")
@click.argument("address")
def show_command(address: str) -> None:
    """Each category and whether ADDRESS receives it."""
    _show(_run(address_param(address)))


@preferences.command("set")
@click.argument("address")
@click.option("--subscribe", multiple=True, help="A category to receive again (repeatable).")
@click.option("--unsubscribe", multiple=True, help="A category to leave (repeatable).")
@click.option(
    "--all/--not-all",
    "unsubscribed_all",
    default=None,
    help="Leave every unsubscribable category, or undo that.",
)
def set_command(
    address: str,
    subscribe: tuple[str, ...],
    unsubscribe: tuple[str, ...],
    unsubscribed_all: bool | None,
) -> None:
    """Change what ADDRESS receives; prints the result."""
    if not (subscribe or unsubscribe or unsubscribed_all is not None):
        raise click.UsageError("give --subscribe, --unsubscribe, --all or --not-all")
    _show(
        _run(
            address_param(address),
            subscribe=subscribe,
            unsubscribe=unsubscribe,
            unsubscribed_all=unsubscribed_all,
        )
    )

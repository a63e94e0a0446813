"""At send time: a notification's category and the List-Unsubscribe URIs it carries."""

from __future__ import annotations

from notifier.compose.rendering import TemplateRenderer
from notifier.compose.requests import Notification
from notifier.compose.templates import TRANSACTIONAL
from notifier.settings import Settings
from notifier.unsubscribe.tokens import unsubscribe_uris

__all__ = ["list_unsubscribe", "notification_category"]


def notification_category(renderer: TemplateRenderer, notification: Notification) -> str:
    """The template's category; mail given inline (no template) counts as transactional."""
    template = notification.request.template
    return TRANSACTIONAL if template is None else renderer.category(template)


def list_unsubscribe(
    settings: Settings, notification: Notification, category: str
) -> tuple[str, ...]:
    """The List-Unsubscribe URIs for an unsubscribable message to exactly one recipient.

    A token names one recipient: a message to several carries none, since a one-click
    POST could only unsubscribe one of them (bulk mail goes one message per recipient).
    """
    if category == TRANSACTIONAL:
        return ()
    recipients = (*notification.to, *notification.cc, *notification.bcc)
    if len(recipients) != 1:
        return ()
    return unsubscribe_uris(
        settings,
        recipient=recipients[0].addr_spec,
        category=category,
        locale=notification.locale or settings.default_locale,
    )

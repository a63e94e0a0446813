"""Start-up checks shared by the worker and the API: templates and event rules must load."""

from __future__ import annotations

from notifier.compose.rendering import TemplateRenderer
from notifier.delivery.dkim import load_signer
from notifier.errors import ConfigurationError
from notifier.events.rules import RuleSet, load_rules
from notifier.settings import Settings

__all__ = [
    "check_unsubscribe_config",
    "check_worker_config",
    "load_event_rules",
    "load_renderer",
]


def load_renderer(settings: Settings) -> TemplateRenderer:
    if not settings.templates_dir.is_dir():
        raise ConfigurationError(
            f"TEMPLATES_DIR {str(settings.templates_dir)!r} is not a directory"
        )
    return TemplateRenderer(settings.templates_dir, default_locale=settings.default_locale)


def load_event_rules(settings: Settings, renderer: TemplateRenderer) -> RuleSet:
    """The routing rules (``EVENTS_FILE``, or ``events.toml`` in the templates when present)."""
    rules_file = settings.effective_events_file
    if settings.events_file is None and not rules_file.exists():
        return RuleSet()
    return load_rules(rules_file, known_templates=set(renderer.template_names()))


def check_worker_config(settings: Settings) -> TemplateRenderer:
    """Load templates, event rules and DKIM keys as a worker would; raise ConfigurationError."""
    renderer = load_renderer(settings)
    load_event_rules(settings, renderer)
    load_signer(settings)
    check_unsubscribe_config(settings, renderer)
    return renderer


def check_unsubscribe_config(settings: Settings, renderer: TemplateRenderer) -> None:
    """In production, unsubscribable templates need PUBLIC_URL and a real SECRET_KEY."""
    categories = renderer.categories()
    if not settings.is_production or not categories:
        return
    named = ", ".join(categories)
    if settings.public_url is None:
        raise ConfigurationError(
            f"PUBLIC_URL must be set in production: templates in categories {named} carry "
            "one-click unsubscribe links to it"
        )
    if settings.secret_key is None:
        raise ConfigurationError(
            f"SECRET_KEY must be set in production: it signs the unsubscribe links of "
            f"categories {named} (without it anyone could forge them)"
        )

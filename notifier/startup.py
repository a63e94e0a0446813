"""Start-up checks shared by the worker and the API: templates and event rules must load, and
the API refuses to serve without keys where that would be open to anyone."""

from __future__ import annotations

import logging

from notifier.compose.rendering import TemplateRenderer
from notifier.delivery.dkim import load_signer
from notifier.errors import ConfigurationError
from notifier.events.rules import RuleSet, load_rules
from notifier.settings import Settings, is_loopback
from notifier.storage.sink import check_broker_config

__all__ = [
    "check_api_config",
    "check_auth_config",
    "check_bind",
    "check_unsubscribe_config",
    "check_worker_config",
    "load_event_rules",
    "load_renderer",
]

log = logging.getLogger(__name__)


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


def check_auth_config(settings: Settings) -> None:
    """Refuse production without keys; warn that development without keys is open."""
    if settings.api_key_values():
        return
    if settings.is_production:
        raise ConfigurationError(
            "NOTIFIER_ENV=production but API_KEYS is empty: the API would accept requests "
            "from anyone. Set API_KEYS to a comma-separated list of secret keys."
        )
    log.warning("API_KEYS is not set: the HTTP API accepts requests without authentication")


def check_bind(settings: Settings, host: str) -> None:
    """Fail closed: without API keys, refuse to serve on anything but a loopback address."""
    if not settings.api_key_values() and not is_loopback(host):
        raise ConfigurationError(
            f"API_KEYS is empty, so the API would accept mail from anyone who can reach "
            f"{host}; without keys it binds only a loopback address (127.0.0.1). Set API_KEYS "
            "to serve on other interfaces."
        )


def check_api_config(settings: Settings, host: str) -> None:
    """What the API refuses to start with, checked before anything binds ``host``."""
    check_bind(settings, host)
    check_auth_config(settings)
    load_event_rules(settings, load_renderer(settings))
    # RabbitMQ (BROKER_URL): a certificate that does not verify or a refused login would fail
    # every publish; a broker that is merely down is fine (records wait for recovery).
    check_broker_config(settings)

"""Start-up checks shared by the worker and the API: templates and event rules must load."""

from __future__ import annotations

from notifier.errors import ConfigurationError
from notifier.rendering import TemplateRenderer
from notifier.settings import Settings

__all__ = ["check_worker_config", "load_renderer"]


def load_renderer(settings: Settings) -> TemplateRenderer:
    if not settings.templates_dir.is_dir():
        raise ConfigurationError(
            f"TEMPLATES_DIR {str(settings.templates_dir)!r} is not a directory"
        )
    return TemplateRenderer(settings.templates_dir, default_locale=settings.default_locale)


def check_worker_config(settings: Settings) -> TemplateRenderer:
    """Load templates (and event rules, when the file exists); raise ConfigurationError."""
    renderer = load_renderer(settings)
    from notifier.events.rules import load_rules

    rules_file = settings.effective_events_file
    if settings.events_file is not None or rules_file.exists():
        load_rules(rules_file, known_templates=set(renderer.template_names()))
    return renderer

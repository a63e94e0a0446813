"""Email rendering: loaded templates (or raw API content) into subject, HTML and plain text.

Raw content from the API goes through ``TemplateRenderer.render_inline``; it never runs Jinja.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import css_inline
import html2text

from notifier.compose.templates import (
    LOCALE_VARIABLE,
    TemplateInfo,
    TemplateLibrary,
    UndefinedVariable,
)
from notifier.errors import InvalidNotification, MissingVariable, TemplateRenderError

__all__ = ["RenderedEmail", "TemplateRenderer"]


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered message body: a one-line subject, optional CSS-inlined HTML, and plain text."""

    subject: str
    html: str | None
    text: str


def _one_line(value: str) -> str:
    # str.split() with no argument also splits on \r, \n, \x0b, \x0c, \x85 and \u2028,
    # so nothing that could end a header line survives.
    return " ".join(value.split())


class TemplateRenderer:
    """Renders the templates under ``templates_dir`` (see TemplateLibrary for the layout).

    Loading, validating and compiling happen once, here; a problem is a ConfigurationError
    naming the offending file.
    """

    def __init__(self, templates_dir: Path, *, default_locale: str = "en") -> None:
        self._library = TemplateLibrary(templates_dir, default_locale=default_locale)
        # One inliner for the process. Remote stylesheets are never fetched: render_inline
        # receives HTML from API callers, and a <link href> must not make us open connections.
        self._inliner = css_inline.CSSInliner(
            keep_style_tags=False, keep_link_tags=False, load_remote_stylesheets=False
        )

    @property
    def default_locale(self) -> str:
        """The locale used when a requested one has no variant."""
        return self._library.default_locale

    def template_names(self) -> list[str]:
        """Names of all loaded templates, sorted."""
        return self._library.names()

    def has_template(self, name: str) -> bool:
        """Whether a template called ``name`` was loaded."""
        return name in self._library

    def describe(self, name: str) -> TemplateInfo:
        """The manifest of ``name``; the example context is a fresh copy on every call."""
        info = self._library.get(name).info
        return TemplateInfo(
            name=info.name,
            description=info.description,
            locales=info.locales,
            required_variables=info.required_variables,
            optional_variables=info.optional_variables,
            example_context=MappingProxyType(copy.deepcopy(dict(info.example_context))),
            category=info.category,
        )

    def category(self, name: str) -> str:
        """The category ``name`` declares in its manifest (``transactional`` or another)."""
        return self._library.get(name).info.category

    def categories(self) -> list[str]:
        """Every unsubscribable category some template declares, sorted."""
        infos = (self._library.get(name).info for name in self._library.names())
        return sorted({info.category for info in infos if info.unsubscribable})

    def resolve_locale(self, name: str, locale: str | None) -> str:
        """The locale ``name`` will be rendered in when ``locale`` is asked for.

        ``ru-RU``, ``ru_RU`` and ``RU`` all find ``ru``; anything without a variant falls back
        to the default locale.
        """
        return self._library.resolve_locale(name, locale)

    def check_context(self, name: str, context: Mapping[str, Any]) -> None:
        """Raise :class:`MissingVariable` for the first required variable not in ``context``."""
        for variable in self._library.get(name).info.required_variables:
            if variable not in context:
                raise MissingVariable(
                    f"template {name!r} needs variable {variable!r}, which was not given",
                    template=name,
                    variable=variable,
                )

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        locale: str | None = None,
        subject: str | None = None,
    ) -> RenderedEmail:
        """Render ``name`` with ``context``; ``subject`` replaces the rendered subject."""
        template = self._library.get(name)
        resolved = self._library.resolve_locale(name, locale)
        variant = template.variants[resolved]
        values = {**context, LOCALE_VARIABLE: resolved}
        try:
            rendered_subject = variant.subject.render(values) if subject is None else subject
            html = variant.html.render(values) if variant.html is not None else None
            text = variant.text.render(values) if variant.text is not None else None
        except UndefinedVariable as exc:
            raise MissingVariable(
                f"template {name!r} needs variable {exc.variable!r}, which was not given",
                template=name,
                variable=exc.variable,
            ) from exc
        except Exception as exc:
            # Sandbox violations, errors raised inside filters, bad arithmetic on context values:
            # all are the template failing on this context, and none is worth retrying.
            raise TemplateRenderError(
                f"template {name!r} ({resolved}) failed to render: {type(exc).__name__}: {exc}",
                template=name,
            ) from exc

        one_line = _one_line(rendered_subject)
        if not one_line:
            if subject is not None:
                raise InvalidNotification("subject must not be empty", field="subject")
            raise TemplateRenderError(
                f"template {name!r} ({resolved}) rendered an empty subject", template=name
            )
        if text is None:
            assert html is not None  # guaranteed at load time: every variant has a body
            text = _html_to_text(html)
        if html is not None:
            try:
                html = self._inliner.inline(html)
            except css_inline.InlineError as exc:
                raise TemplateRenderError(
                    f"template {name!r} ({resolved}): CSS could not be inlined: {exc}",
                    template=name,
                ) from exc
        return RenderedEmail(subject=one_line, html=html, text=text)

    def render_inline(self, *, subject: str, text: str | None, html: str | None) -> RenderedEmail:
        """Wrap raw content from the API, which is never evaluated as a template.

        The HTML gets its CSS inlined; missing text is derived from the HTML.
        """
        one_line = _one_line(subject)
        if not one_line:
            raise InvalidNotification("subject must not be empty", field="subject")
        if html is not None and not html.strip():
            html = None
        if text is not None and not text.strip():
            text = None
        if html is None and text is None:
            raise InvalidNotification("give at least one of text and html", field="text")
        if html is not None:
            if text is None:
                text = _html_to_text(html)
            try:
                html = self._inliner.inline(html)
            except css_inline.InlineError as exc:
                raise InvalidNotification(
                    f"the HTML's CSS could not be inlined: {exc}", field="html"
                ) from exc
        assert text is not None
        return RenderedEmail(subject=one_line, html=html, text=text)


def _html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML body; links stay as ``[text](url)``."""
    # HTML2Text keeps parser state, so each conversion gets its own (cheap) instance.
    converter = html2text.HTML2Text()
    converter.body_width = 0  # never wrap: wrapping breaks long URLs
    converter.ignore_images = True
    converter.ignore_tables = True  # layout tables, not data tables, in email
    converter.unicode_snob = True
    text: str = converter.handle(html)
    return text.strip() + "\n"

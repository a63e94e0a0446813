"""Template loading: each template directory, its manifest (compose.manifest) and sources
read and compiled once (sandboxed Jinja2) into the TemplateLibrary the renderer uses."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from notifier.compose.manifest import (
    LOCALE_VARIABLE,
    MANIFEST_FILE,
    TRANSACTIONAL,
    TemplateInfo,
    load_manifest,
    read_source,
)
from notifier.errors import ConfigurationError, TemplateNotFound

__all__ = [
    "LOCALE_VARIABLE",
    "MANIFEST_FILE",
    "TRANSACTIONAL",
    "LoadedTemplate",
    "TemplateInfo",
    "TemplateLibrary",
    "TemplateVariant",
    "UndefinedVariable",
    "normalise_locale",
]

#: Files a locale directory may hold; ``subject.txt`` and one body are required.
SUBJECT_FILE = "subject.txt"
HTML_BODY_FILE = "body.html"
TEXT_BODY_FILE = "body.txt"
_LOCALE_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$")


@dataclass(frozen=True, slots=True)
class TemplateVariant:
    """The compiled templates of one template in one locale."""

    subject: jinja2.Template
    html: jinja2.Template | None
    text: jinja2.Template | None


@dataclass(frozen=True, slots=True)
class LoadedTemplate:
    """One template: its manifest and its compiled variants by locale directory."""

    info: TemplateInfo
    variants: Mapping[str, TemplateVariant]
    #: Normalised locale tag (``pt-br``) to the directory name it was found under.
    locale_index: Mapping[str, str]


class UndefinedVariable(jinja2.UndefinedError):
    """Raised while rendering a variable the context lacks; ``variable`` names it."""

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


class _StrictUndefined(jinja2.StrictUndefined):
    """StrictUndefined that reports the missing name as data instead of only in the message."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        # The sandbox also hands out undefined objects, with exc=SecurityError, for blocked
        # attributes; those must stay security errors, not become "missing variable".
        if self._undefined_exception is jinja2.UndefinedError and self._undefined_name:
            raise UndefinedVariable(self._undefined_message, variable=self._undefined_name)
        super()._fail_with_undefined_error(*args, **kwargs)


# StrictUndefined binds its dunders (__str__, __iter__, __bool__, ...) to the *base* class
# function at class-creation time, so overriding the method alone would not reach them.
for _attr in dir(jinja2.StrictUndefined):
    if getattr(jinja2.StrictUndefined, _attr) is jinja2.Undefined._fail_with_undefined_error:
        setattr(_StrictUndefined, _attr, _StrictUndefined._fail_with_undefined_error)
del _attr


@jinja2.pass_eval_context
def _nl2br(eval_ctx: jinja2.nodes.EvalContext, value: object) -> str:
    """Keep the line breaks of plain text in HTML: escape it, then join lines with ``<br>``."""
    lines = str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if eval_ctx.autoescape:
        return Markup("<br>\n").join(escape(line) for line in lines)
    return "<br>\n".join(lines)


class _PreloadedLoader(jinja2.BaseLoader):
    """Serves template sources read once at start-up; rendering never touches the disk."""

    def __init__(self, sources: Mapping[str, tuple[str, Path]]) -> None:
        self._sources = dict(sources)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        try:
            source, path = self._sources[template]
        except KeyError:
            raise jinja2.TemplateNotFound(template) from None
        return source, str(path), _always_current

    def list_templates(self) -> list[str]:
        return sorted(self._sources)


def _always_current() -> bool:
    return True


def normalise_locale(locale: str) -> str:
    """``ru_RU.UTF-8`` / ``ru-RU`` / ``RU_ru`` -> ``ru-ru``."""
    tag = locale.strip().split(".", 1)[0].split("@", 1)[0]
    return tag.replace("_", "-").lower()


class TemplateLibrary:
    """Loads, validates and compiles every template under ``templates_dir`` once.

    Layout::

        templates_dir/
            _layouts/base.html            shared files: directories starting with "_"
            <name>/template.toml          description and [variables.<var>] tables
            <name>/<locale>/subject.txt   required
            <name>/<locale>/body.html     at least one of body.html and body.txt
            <name>/<locale>/body.txt      when missing, text is derived from the HTML

    Any problem is a :class:`~notifier.errors.ConfigurationError` naming the offending file.
    """

    def __init__(self, templates_dir: Path, *, default_locale: str = "en") -> None:
        self._dir = Path(templates_dir)
        self._default_locale = normalise_locale(default_locale)
        if not _LOCALE_RE.match(self._default_locale):
            raise ConfigurationError(f"invalid default locale {default_locale!r}")
        if not self._dir.is_dir():
            raise ConfigurationError(f"templates directory {self._dir} does not exist")

        sources: dict[str, tuple[str, Path]] = {}
        manifests: dict[str, tuple[Path, dict[str, Any]]] = {}
        locale_dirs: dict[str, dict[str, str]] = {}  # template -> {locale dir: normalised}
        for entry in sorted(self._dir.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if entry.name.startswith("_"):
                for path in sorted(entry.rglob("*")):
                    if path.is_file() and path.suffix in (".html", ".txt"):
                        sources[self._key(path)] = (read_source(path), path)
                continue
            manifest_path = entry / MANIFEST_FILE
            if not manifest_path.is_file():
                raise ConfigurationError(f"{manifest_path}: template manifest is missing")
            manifests[entry.name] = (manifest_path, load_manifest(manifest_path))
            locale_dirs[entry.name] = self._scan_locales(entry, sources)

        self._env = ImmutableSandboxedEnvironment(
            loader=_PreloadedLoader(sources),
            undefined=_StrictUndefined,
            autoescape=_autoescape,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            cache_size=-1,  # never evict: every template is compiled exactly once
        )
        self._env.filters["nl2br"] = _nl2br
        used_variables = self._compile_all(sources)

        self._templates: dict[str, LoadedTemplate] = {}
        for name, (manifest_path, manifest) in manifests.items():
            self._templates[name] = self._build(
                name, manifest_path, manifest, locale_dirs[name], used_variables
            )

    @property
    def default_locale(self) -> str:
        """The locale used when a requested one has no variant."""
        return self._default_locale

    def names(self) -> list[str]:
        """Names of all loaded templates, sorted."""
        return sorted(self._templates)

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def get(self, name: str) -> LoadedTemplate:
        """The template called ``name``; raises TemplateNotFound."""
        try:
            return self._templates[name]
        except KeyError:
            raise TemplateNotFound(f"no template named {name!r}", template=name) from None

    def resolve_locale(self, name: str, locale: str | None) -> str:
        """The locale ``name`` will be rendered in when ``locale`` is asked for.

        ``ru-RU``, ``ru_RU`` and ``RU`` all find ``ru``; anything without a variant falls back
        to the default locale.
        """
        template = self.get(name)
        if locale:
            tag = normalise_locale(locale)
            while tag:
                found = template.locale_index.get(tag)
                if found is not None:
                    return found
                tag = tag.rpartition("-")[0]
        return template.locale_index[self._default_locale]

    # -- loading ----------------------------------------------------------------------------

    def _key(self, path: Path) -> str:
        return path.relative_to(self._dir).as_posix()

    def _scan_locales(
        self, template_dir: Path, sources: dict[str, tuple[str, Path]]
    ) -> dict[str, str]:
        """Read every locale variant of one template into ``sources``; map dir -> normalised."""
        locales: dict[str, str] = {}
        seen: dict[str, Path] = {}
        for locale_dir in sorted(template_dir.iterdir()):
            if not locale_dir.is_dir() or locale_dir.name.startswith((".", "_")):
                continue
            tag = normalise_locale(locale_dir.name)
            if not _LOCALE_RE.match(tag):
                raise ConfigurationError(f"{locale_dir}: {locale_dir.name!r} is not a locale tag")
            if tag in seen:
                raise ConfigurationError(f"{locale_dir}: same locale as {seen[tag]}")
            seen[tag] = locale_dir
            subject = locale_dir / SUBJECT_FILE
            if not subject.is_file():
                raise ConfigurationError(f"{subject}: subject template is missing")
            bodies = [locale_dir / HTML_BODY_FILE, locale_dir / TEXT_BODY_FILE]
            if not any(path.is_file() for path in bodies):
                raise ConfigurationError(
                    f"{locale_dir}: needs {HTML_BODY_FILE}, {TEXT_BODY_FILE} or both"
                )
            for path in (subject, *bodies):
                if path.is_file():
                    sources[self._key(path)] = (read_source(path), path)
            locales[locale_dir.name] = tag
        if self._default_locale not in locales.values():
            missing = template_dir / self._default_locale / SUBJECT_FILE
            raise ConfigurationError(
                f"{missing}: template {template_dir.name!r} has no variant for the "
                f"default locale {self._default_locale!r}"
            )
        return locales

    def _compile_all(self, sources: Mapping[str, tuple[str, Path]]) -> dict[str, set[str]]:
        """Compile every source once, check what it extends or includes exists.

        Returns the context variables each source uses.
        """
        used: dict[str, set[str]] = {}
        for key, (source, path) in sources.items():
            try:
                ast = self._env.parse(source, key, str(path))
                self._env.get_template(key)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigurationError(f"{path}:{exc.lineno}: {exc.message}") from exc
            for referenced in jinja2.meta.find_referenced_templates(ast):
                if referenced is None:
                    raise ConfigurationError(f"{path}: extends or includes a computed name")
                if referenced not in sources:
                    raise ConfigurationError(f"{path}: refers to missing template {referenced!r}")
            used[key] = jinja2.meta.find_undeclared_variables(ast)
        return used

    def _build(
        self,
        name: str,
        manifest_path: Path,
        manifest: Mapping[str, Any],
        locales: Mapping[str, str],
        used_variables: Mapping[str, set[str]],
    ) -> LoadedTemplate:
        declared = set(manifest["variables"])
        variants: dict[str, TemplateVariant] = {}
        for locale_dir in locales:
            parts: dict[str, jinja2.Template | None] = {}
            for file_name in (SUBJECT_FILE, HTML_BODY_FILE, TEXT_BODY_FILE):
                key = f"{name}/{locale_dir}/{file_name}"
                if key not in used_variables:
                    parts[file_name] = None
                    continue
                parts[file_name] = self._env.get_template(key)
                undeclared = sorted(used_variables[key] - declared - {LOCALE_VARIABLE})
                if undeclared:
                    raise ConfigurationError(
                        f"{self._dir / key}: uses {', '.join(undeclared)}, "
                        f"not declared in {manifest_path}"
                    )
            subject = parts[SUBJECT_FILE]
            assert subject is not None
            variants[locale_dir] = TemplateVariant(
                subject=subject, html=parts[HTML_BODY_FILE], text=parts[TEXT_BODY_FILE]
            )

        variables: Mapping[str, Mapping[str, Any]] = manifest["variables"]
        info = TemplateInfo(
            name=name,
            description=manifest["description"],
            locales=tuple(sorted(locales)),
            required_variables=tuple(v for v, spec in variables.items() if spec["required"]),
            optional_variables=tuple(v for v, spec in variables.items() if not spec["required"]),
            example_context=MappingProxyType(
                {v: spec["example"] for v, spec in variables.items() if "example" in spec}
            ),
            category=manifest["category"],
        )
        index = {tag: locale_dir for locale_dir, tag in locales.items()}
        return LoadedTemplate(info=info, variants=MappingProxyType(variants), locale_index=index)


def _autoescape(template_name: str | None) -> bool:
    return template_name is not None and template_name.endswith(".html")

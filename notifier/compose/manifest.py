"""Template manifests: each template's ``template.toml`` (description, category, variables)
read and validated, and the TemplateInfo it describes."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from notifier.errors import ConfigurationError

__all__ = [
    "LOCALE_VARIABLE",
    "MANIFEST_FILE",
    "TRANSACTIONAL",
    "TemplateInfo",
    "load_manifest",
    "read_source",
]

#: Name of the manifest file inside each template directory.
MANIFEST_FILE = "template.toml"
#: Context variable the renderer always sets; manifests may not declare it.
LOCALE_VARIABLE = "locale"

_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MANIFEST_KEYS = frozenset({"description", "category", "variables"})
#: The category recipients can never unsubscribe from (password resets, verification).
TRANSACTIONAL = "transactional"
#: Category names: what the suppression list and unsubscribe links carry.
_CATEGORY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_VARIABLE_KEYS = frozenset({"required", "description", "example"})


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What a template is for, where it exists and which variables it takes."""

    name: str
    description: str
    locales: tuple[str, ...]
    required_variables: tuple[str, ...]
    optional_variables: tuple[str, ...]
    example_context: Mapping[str, Any]
    #: ``transactional``, or a category recipients may unsubscribe from.
    category: str = TRANSACTIONAL

    @property
    def unsubscribable(self) -> bool:
        return self.category != TRANSACTIONAL


def read_source(path: Path) -> str:
    """A template or manifest file's text; an unreadable file is a ConfigurationError."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc}") from exc


def load_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate one ``template.toml``; ``required`` defaults to false."""
    try:
        data = tomllib.loads(read_source(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from exc

    def fail(problem: str) -> NoReturn:
        raise ConfigurationError(f"{path}: {problem}")

    unknown = sorted(set(data) - _MANIFEST_KEYS)
    if unknown:
        fail(f"unknown keys {', '.join(unknown)}")
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        fail("'description' must be a non-empty string")
    category = data.get("category")
    if not isinstance(category, str) or not _CATEGORY_RE.match(category):
        fail(
            f"'category' must be set: {TRANSACTIONAL!r} (never unsubscribable) or a name such "
            "as 'product_updates' of a-z, 0-9, '_', '.', '-'"
        )
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        fail("'variables' must be a table of [variables.<name>] tables")
    checked: dict[str, dict[str, Any]] = {}
    for variable, spec in variables.items():
        where = f"[variables.{variable}]"
        if not _VARIABLE_RE.match(variable):
            fail(f"{where}: not a valid variable name")
        if variable == LOCALE_VARIABLE:
            fail(f"{where}: {LOCALE_VARIABLE!r} is set by the renderer and cannot be declared")
        if not isinstance(spec, dict):
            fail(f"{where} must be a table")
        unknown = sorted(set(spec) - _VARIABLE_KEYS)
        if unknown:
            fail(f"{where}: unknown keys {', '.join(unknown)}")
        required = spec.get("required", False)
        if not isinstance(required, bool):
            fail(f"{where}: 'required' must be true or false")
        if not isinstance(spec.get("description", ""), str):
            fail(f"{where}: 'description' must be a string")
        if required and "example" not in spec:
            fail(f"{where}: a required variable needs an 'example' for previews")
        checked[variable] = {**spec, "required": required}
    return {"description": description.strip(), "category": category, "variables": checked}

"""Unit tests for rendering: shipped templates, locales, escaping, sandbox and CSS."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
from jinja2.exceptions import SecurityError

from notifier.compose.rendering import RenderedEmail, TemplateRenderer
from notifier.errors import (
    ConfigurationError,
    InvalidNotification,
    MissingVariable,
    TemplateNotFound,
    TemplateRenderError,
)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
SHIPPED = (
    "welcome",
    "password_reset",
    "email_verification",
    "plain",
    "product_update",
    "weekly_digest",
)
CYRILLIC = re.compile("[\u0400-\u04ff]")
LAYOUT = (TEMPLATES_DIR / "_layouts" / "base.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(TEMPLATES_DIR)


def make_template(
    root: Path,
    name: str,
    *,
    manifest: str = 'description = "test"\ncategory = "transactional"\n',
    files: dict[str, str],
    locale: str = "en",
) -> Path:
    """Write one template (manifest + locale files) under ``root``; return its directory."""
    template_dir = root / name
    (template_dir / locale).mkdir(parents=True)
    (template_dir / "template.toml").write_text(manifest, encoding="utf-8")
    for file_name, content in files.items():
        (template_dir / locale / file_name).write_text(content, encoding="utf-8")
    return template_dir


# -- shipped templates ---------------------------------------------------------------------


def test_all_shipped_templates_are_loaded(renderer: TemplateRenderer) -> None:
    assert renderer.template_names() == sorted(SHIPPED)
    for name in SHIPPED:
        assert renderer.has_template(name)
        assert renderer.describe(name).locales == ("en", "ru")
    assert not renderer.has_template("_layouts")


@pytest.mark.parametrize("locale", ["en", "ru"])
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_template_renders_with_its_example(
    renderer: TemplateRenderer, name: str, locale: str
) -> None:
    info = renderer.describe(name)
    renderer.check_context(name, info.example_context)

    email = renderer.render(name, info.example_context, locale=locale)

    assert email.subject
    assert "\n" not in email.subject and "\r" not in email.subject
    assert email.html is not None
    assert f'<html lang="{locale}"' in email.html
    assert "<style" not in email.html
    assert email.text.strip()
    for variable in info.required_variables:
        value = str(info.example_context[variable]).splitlines()[0]
        assert value in email.subject + "\n" + email.text


@pytest.mark.parametrize("name", ["welcome", "password_reset", "email_verification"])
def test_russian_subject_is_cyrillic(renderer: TemplateRenderer, name: str) -> None:
    example = renderer.describe(name).example_context
    assert CYRILLIC.search(renderer.render(name, example, locale="ru").subject)
    assert not CYRILLIC.search(renderer.render(name, example, locale="en").subject)


def test_optional_variables_have_defaults(renderer: TemplateRenderer) -> None:
    email = renderer.render(
        "welcome", {"name": "Ada", "login_url": "https://app.example.com/login"}
    )
    assert email.subject == "Welcome to Notifier, Ada!"

    reset = renderer.render(
        "password_reset", {"name": "Ada", "reset_url": "https://app.example.com/r"}
    )
    assert "expires" not in reset.text
    with_expiry = renderer.render(
        "password_reset",
        {"name": "Ada", "reset_url": "https://app.example.com/r", "expires_in_minutes": 15},
    )
    assert "expires in 15 minutes" in with_expiry.text


def test_body_txt_is_used_when_present(renderer: TemplateRenderer) -> None:
    email = renderer.render(
        "welcome", {"name": "Ada", "login_url": "https://app.example.com/login"}
    )
    assert email.text.startswith("Welcome, Ada!\n")
    assert "Sign in: https://app.example.com/login" in email.text


def test_plain_template_keeps_body_and_line_breaks(renderer: TemplateRenderer) -> None:
    body = "Line one\nLine <two> & more\r\n\nLast"
    email = renderer.render("plain", {"subject": "Hello\r\nBcc: x@example.com", "body": body})

    assert email.subject == "Hello Bcc: x@example.com"
    assert email.text == body
    assert email.html is not None
    assert "Line one<br>" in email.html
    assert "Line &lt;two&gt; &amp; more<br>" in email.html
    assert "<two>" not in email.html


def test_manifest_declares_every_variable_the_templates_use() -> None:
    env = jinja2.Environment(autoescape=True)  # parsing only, nothing is rendered
    env.filters["nl2br"] = str  # the renderer's own filter; parsing only needs the name
    checked = 0
    for manifest_path in sorted(TEMPLATES_DIR.glob("*/template.toml")):
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
        declared = set(manifest.get("variables", {}))
        for path in sorted(manifest_path.parent.glob("*/*")):
            if path.name not in ("subject.txt", "body.html", "body.txt"):
                continue
            used = jinja2.meta.find_undeclared_variables(env.parse(path.read_text("utf-8")))
            assert used - {"locale"} <= declared, f"{path} uses undeclared {used - declared}"
            checked += 1
    assert checked >= 4 * 2 * 2


def test_layout_uses_no_context_variable_but_locale() -> None:
    used = jinja2.meta.find_undeclared_variables(jinja2.Environment(autoescape=True).parse(LAYOUT))
    assert used <= {"locale"}


def test_both_text_paths_are_shipped() -> None:
    variants = [p for p in TEMPLATES_DIR.glob("*/*") if (p / "subject.txt").is_file()]
    assert any((p / "body.txt").is_file() for p in variants)
    assert any(not (p / "body.txt").is_file() for p in variants)


# -- locales -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "resolved"),
    [
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("ru_RU", "ru"),
        ("RU", "ru"),
        ("ru_RU.UTF-8", "ru"),
        ("en-GB", "en"),
        ("de", "en"),
        ("de-DE", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_resolve_locale(renderer: TemplateRenderer, requested: str | None, resolved: str) -> None:
    assert renderer.resolve_locale("welcome", requested) == resolved


def test_render_falls_back_to_default_locale(renderer: TemplateRenderer) -> None:
    example = renderer.describe("password_reset").example_context
    assert renderer.render("password_reset", example, locale="de").subject == "Reset your password"
    russian = (TEMPLATES_DIR / "password_reset" / "ru" / "subject.txt").read_text("utf-8")
    assert renderer.render("password_reset", example, locale="ru-RU").subject == russian.strip()


def test_region_specific_variant_wins_over_language(tmp_path: Path) -> None:
    files = {"subject.txt": "{{ locale }}", "body.txt": "x"}
    make_template(tmp_path, "greet", files=files)
    for locale_dir in ("pt", "pt_BR"):
        (tmp_path / "greet" / locale_dir).mkdir()
        for file_name, content in files.items():
            (tmp_path / "greet" / locale_dir / file_name).write_text(content, encoding="utf-8")
    renderer = TemplateRenderer(tmp_path)

    assert renderer.resolve_locale("greet", "pt-br") == "pt_BR"
    assert renderer.resolve_locale("greet", "pt-PT") == "pt"
    assert renderer.render("greet", {}, locale="pt-BR").subject == "pt_BR"


def test_locale_is_in_the_context(tmp_path: Path) -> None:
    make_template(tmp_path, "loc", files={"subject.txt": "[{{ locale }}]", "body.txt": "b"})
    renderer = TemplateRenderer(tmp_path)
    assert renderer.render("loc", {"locale": "xx"}, locale="fr").subject == "[en]"


# -- errors --------------------------------------------------------------------------------


def test_unknown_template(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateNotFound) as info:
        renderer.render("nope", {})
    assert info.value.template == "nope"
    with pytest.raises(TemplateNotFound):
        renderer.describe("nope")
    with pytest.raises(TemplateNotFound):
        renderer.check_context("nope", {})
    with pytest.raises(TemplateNotFound):
        renderer.resolve_locale("nope", "en")


def test_check_context_names_first_missing_required_variable(
    renderer: TemplateRenderer,
) -> None:
    with pytest.raises(MissingVariable) as info:
        renderer.check_context("password_reset", {"name": "Ada"})
    assert info.value.variable == "reset_url"
    assert info.value.template == "password_reset"
    assert "reset_url" in str(info.value)
    # optional variables are not required
    renderer.check_context("password_reset", {"name": "Ada", "reset_url": "https://x"})


def test_render_names_variable_used_only_in_the_body(tmp_path: Path) -> None:
    make_template(
        tmp_path,
        "order",
        manifest=(
            'description = "d"\ncategory = "transactional"\n'
            "[variables.order_id]\nrequired = false\n"
        ),
        files={
            "subject.txt": "Your order",
            "body.html": '{% extends "_layouts/base.html" %}'
            "{% block content %}<p>Order {{ order_id }}</p>{% endblock %}",
        },
    )
    (tmp_path / "_layouts").mkdir()
    (tmp_path / "_layouts" / "base.html").write_text(LAYOUT, encoding="utf-8")
    renderer = TemplateRenderer(tmp_path)

    renderer.check_context("order", {})  # not required, so the cheap check passes
    with pytest.raises(MissingVariable) as info:
        renderer.render("order", {})
    assert info.value.variable == "order_id"
    assert info.value.template == "order"
    assert "order_id" in str(info.value)


@pytest.mark.parametrize(
    "expression",
    ["{{ missing | upper }}", "{% for x in missing %}{% endfor %}", "{% if missing %}{% endif %}"],
)
def test_every_use_of_an_undefined_variable_is_missing_variable(
    tmp_path: Path, expression: str
) -> None:
    make_template(
        tmp_path,
        "t",
        manifest='description = "d"\ncategory = "transactional"\n[variables.missing]\n',
        files={"subject.txt": "s", "body.txt": expression},
    )
    with pytest.raises(MissingVariable) as info:
        TemplateRenderer(tmp_path).render("t", {})
    assert info.value.variable == "missing"


def test_missing_variable_in_shipped_template(renderer: TemplateRenderer) -> None:
    with pytest.raises(MissingVariable) as info:
        renderer.render("email_verification", {"name": "Ada"}, locale="ru")
    assert info.value.variable == "verify_url"


def test_sandbox_blocks_dunder_access(tmp_path: Path) -> None:
    make_template(
        tmp_path,
        "evil",
        files={"subject.txt": "s", "body.txt": "{{ ''.__class__.__mro__ }}"},
    )
    with pytest.raises(TemplateRenderError) as info:
        TemplateRenderer(tmp_path).render("evil", {})
    assert not isinstance(info.value, MissingVariable)
    assert isinstance(info.value.__cause__, SecurityError)
    assert info.value.template == "evil"


def test_sandbox_is_immutable(tmp_path: Path) -> None:
    make_template(
        tmp_path,
        "mutate",
        manifest=(
            'description = "d"\ncategory = "transactional"\n'
            "[variables.items]\nrequired = true\nexample = [1]\n"
        ),
        files={"subject.txt": "s", "body.txt": "{{ items.append(2) }}"},
    )
    items = [1]
    with pytest.raises(TemplateRenderError) as info:
        TemplateRenderer(tmp_path).render("mutate", {"items": items})
    assert isinstance(info.value.__cause__, SecurityError)
    assert items == [1]


def test_filter_errors_become_template_render_error(tmp_path: Path) -> None:
    make_template(
        tmp_path,
        "bad",
        manifest=(
            'description = "d"\ncategory = "transactional"\n'
            "[variables.n]\nrequired = true\nexample = 1\n"
        ),
        files={"subject.txt": "s", "body.txt": "{{ n | round(2) }}"},
    )
    with pytest.raises(TemplateRenderError) as info:
        TemplateRenderer(tmp_path).render("bad", {"n": "not a number"})
    assert info.value.__cause__ is not None
    assert not isinstance(info.value, MissingVariable)


# -- escaping, CSS, text -------------------------------------------------------------------


def test_context_values_are_escaped_in_html_only(renderer: TemplateRenderer) -> None:
    name = "<script>alert(1)</script>"
    email = renderer.render("welcome", {"name": name, "login_url": "https://x.example/l"})

    assert email.html is not None
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert name in email.text  # body.txt is not HTML, so no escaping there
    assert name in email.subject


def test_css_is_inlined(renderer: TemplateRenderer) -> None:
    email = renderer.render("welcome", renderer.describe("welcome").example_context)
    assert email.html is not None
    assert "<style" not in email.html
    assert re.search(r'<a class="button" href="[^"]+" style="[^"]*background-color', email.html)
    assert re.search(r"<body[^>]* style=\"", email.html)


def test_derived_text_keeps_link_urls(renderer: TemplateRenderer) -> None:
    url = "https://app.example.com/reset?token=abc&step=2"
    email = renderer.render("password_reset", {"name": "Ada", "reset_url": url})

    assert not (TEMPLATES_DIR / "password_reset" / "en" / "body.txt").exists()
    assert "[Reset password](" + url + ")" in email.text
    assert "<" not in email.text  # no markup left
    assert "color:" not in email.text  # the <style> block is not text
    assert "Hi Ada," in email.text


def test_subject_override(renderer: TemplateRenderer) -> None:
    example = renderer.describe("welcome").example_context
    email = renderer.render("welcome", example, subject="  Custom\r\n subject\t")
    assert email.subject == "Custom subject"
    with pytest.raises(InvalidNotification):
        renderer.render("welcome", example, subject=" \r\n")


def test_subject_is_one_line(tmp_path: Path) -> None:
    make_template(
        tmp_path,
        "multi",
        files={
            "subject.txt": "First\n{% if true %}\n  second\u2028third\n{% endif %}\n",
            "body.txt": "b",
        },
    )
    email = TemplateRenderer(tmp_path).render("multi", {})
    assert email.subject == "First second third"


def test_empty_subject_is_an_error(tmp_path: Path) -> None:
    make_template(tmp_path, "empty", files={"subject.txt": "  ", "body.txt": "b"})
    with pytest.raises(TemplateRenderError):
        TemplateRenderer(tmp_path).render("empty", {})


def test_text_only_template_has_no_html(tmp_path: Path) -> None:
    make_template(tmp_path, "txt", files={"subject.txt": "s", "body.txt": "<b>{{ 1 + 1 }}</b>"})
    email = TemplateRenderer(tmp_path).render("txt", {})
    assert email == RenderedEmail(subject="s", html=None, text="<b>2</b>")


# -- render_inline -------------------------------------------------------------------------


def test_render_inline_derives_text_and_never_evaluates(renderer: TemplateRenderer) -> None:
    html = (
        "<style>p { color: red }</style>"
        '<p>Hi {{ name }} {% if 1 %}x{% endif %} <a href="https://x.example/a">open</a></p>'
    )
    email = renderer.render_inline(subject="Hello {{ name }}\r\nX", text=None, html=html)

    assert email.subject == "Hello {{ name }} X"
    assert email.html is not None
    assert "{{ name }}" in email.html
    assert "{% if 1 %}" in email.html
    assert 'style="color: red' in email.html
    assert "<style" not in email.html
    assert "{{ name }}" in email.text
    assert "[open](https://x.example/a)" in email.text


def test_render_inline_text_only_and_both(renderer: TemplateRenderer) -> None:
    text_only = renderer.render_inline(subject="s", text="{{ 7*7 }}", html=None)
    assert text_only == RenderedEmail(subject="s", html=None, text="{{ 7*7 }}")

    both = renderer.render_inline(subject="s", text="mine", html="<p>theirs</p>")
    assert both.text == "mine"
    assert both.html is not None and "theirs" in both.html


def test_render_inline_does_not_fetch_remote_stylesheets(renderer: TemplateRenderer) -> None:
    html = '<link rel="stylesheet" href="http://127.0.0.1:9/x.css"><p>x</p>'
    email = renderer.render_inline(subject="s", text=None, html=html)
    assert email.html is not None
    assert "<link" not in email.html


@pytest.mark.parametrize(
    ("subject", "text", "html", "field"),
    [
        ("s", None, None, "text"),
        ("s", "  ", "", "text"),
        ("\r\n", "t", None, "subject"),
    ],
)
def test_render_inline_rejects_empty_input(
    renderer: TemplateRenderer, subject: str, text: str | None, html: str | None, field: str
) -> None:
    with pytest.raises(InvalidNotification) as info:
        renderer.render_inline(subject=subject, text=text, html=html)
    assert info.value.field == field


# -- loading and validation ----------------------------------------------------------------


def test_compiled_templates_are_reused_without_disk_access(tmp_path: Path) -> None:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, copy)
    renderer = TemplateRenderer(copy)
    example = renderer.describe("welcome").example_context
    first = renderer.render("welcome", example, locale="ru")

    shutil.rmtree(copy)  # layout, subjects and bodies are all gone now

    assert renderer.render("welcome", example, locale="ru") == first
    assert renderer.render("password_reset", renderer.describe("password_reset").example_context)


def test_loader_is_not_consulted_per_render(
    renderer: TemplateRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> tuple[str, str | None, None]:
        raise AssertionError("template source loaded again after construction")

    monkeypatch.setattr(jinja2.BaseLoader, "get_source", refuse)
    monkeypatch.setattr(jinja2.BaseLoader, "load", refuse)
    monkeypatch.setattr("notifier.compose.templates._PreloadedLoader.get_source", refuse)
    for _ in range(3):
        renderer.render("password_reset", renderer.describe("password_reset").example_context)


def test_describe(renderer: TemplateRenderer) -> None:
    info = renderer.describe("welcome")
    assert info.name == "welcome"
    assert info.description
    assert info.required_variables == ("name",)
    assert set(info.optional_variables) == {"login_url", "app_name"}
    assert set(info.example_context) == {"name", "login_url", "app_name"}
    with pytest.raises(TypeError):
        info.example_context["name"] = "x"  # type: ignore[index]


def test_missing_templates_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        TemplateRenderer(tmp_path / "nope")


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("description = ", "invalid TOML"),
        ("", "description"),
        ('description = "d"\ncategory = "transactional"\ncolour = 1\n', "colour"),
        ('description = "d"\n', "'category' must be set"),
        ('description = "d"\ncategory = "Product Updates"\n', "'category' must be set"),
        (
            'description = "d"\ncategory = "transactional"\n[variables.x]\nrequired = "yes"\n',
            "required",
        ),
        (
            'description = "d"\ncategory = "transactional"\n[variables.x]\nrequried = true\n',
            "requried",
        ),
        (
            'description = "d"\ncategory = "transactional"\n[variables.x]\nrequired = true\n',
            "example",
        ),
        ('description = "d"\ncategory = "transactional"\n[variables.locale]\n', "locale"),
        ('description = "d"\ncategory = "transactional"\n[variables."not-valid"]\n', "not-valid"),
    ],
)
def test_bad_manifest_is_configuration_error(tmp_path: Path, manifest: str, problem: str) -> None:
    make_template(tmp_path, "t", manifest=manifest, files={"subject.txt": "s", "body.txt": "b"})
    with pytest.raises(ConfigurationError) as info:
        TemplateRenderer(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "t" / "template.toml") in message
    assert problem in message


def test_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "t" / "en").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match=r"template\.toml"):
        TemplateRenderer(tmp_path)


def test_missing_subject_names_the_file(tmp_path: Path) -> None:
    make_template(tmp_path, "t", files={"body.txt": "b"})
    with pytest.raises(ConfigurationError) as info:
        TemplateRenderer(tmp_path)
    assert str(tmp_path / "t" / "en" / "subject.txt") in str(info.value)


def test_missing_body(tmp_path: Path) -> None:
    make_template(tmp_path, "t", files={"subject.txt": "s"})
    with pytest.raises(ConfigurationError, match="body"):
        TemplateRenderer(tmp_path)


def test_missing_default_locale_variant(tmp_path: Path) -> None:
    make_template(tmp_path, "t", locale="ru", files={"subject.txt": "s", "body.txt": "b"})
    with pytest.raises(ConfigurationError) as info:
        TemplateRenderer(tmp_path)
    assert str(tmp_path / "t") in str(info.value)
    assert "'en'" in str(info.value)
    # the same tree is fine when Russian is the default
    assert TemplateRenderer(tmp_path, default_locale="ru").resolve_locale("t", "en") == "ru"


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    make_template(tmp_path, "t", files={"subject.txt": "s", "body.txt": "{% if %}"})
    with pytest.raises(ConfigurationError) as info:
        TemplateRenderer(tmp_path)
    assert str(tmp_path / "t" / "en" / "body.txt") in str(info.value)


def test_undeclared_variable_is_configuration_error(tmp_path: Path) -> None:
    make_template(tmp_path, "t", files={"subject.txt": "{{ who }}", "body.txt": "b"})
    with pytest.raises(ConfigurationError, match="who"):
        TemplateRenderer(tmp_path)


def test_missing_layout_is_configuration_error(tmp_path: Path) -> None:
    body = '{% extends "_layouts/base.html" %}'
    make_template(tmp_path, "t", files={"subject.txt": "s", "body.html": body})
    with pytest.raises(ConfigurationError, match=r"_layouts/base\.html"):
        TemplateRenderer(tmp_path)


def test_non_template_entries_are_ignored(tmp_path: Path) -> None:
    make_template(tmp_path, "t", files={"subject.txt": "s", "body.txt": "b"})
    (tmp_path / "events.toml").write_text("[x]\n", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    assert TemplateRenderer(tmp_path).template_names() == ["t"]

"""The preferences page behind an unsubscribe link: plain HTML, no JavaScript, en and ru."""
# ruff: noqa: RUF001 - the Russian strings are Cyrillic on purpose

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jinja2

__all__ = ["PAGE_CSP", "PageText", "category_label", "page_text", "render_error", "render_page"]

#: Nothing but this page's inline style and its own form target.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True, slots=True)
class PageText:
    title: str
    intro: str
    legend: str
    leave_all: str
    save: str
    saved: str
    unsubscribed: str
    invalid: str
    expired: str
    blocked: str


_TEXT = {
    "en": PageText(
        title="Email preferences",
        intro="Choose which emails {address} receives. Account emails such as password "
        "resets are always sent.",
        legend="Send me",
        leave_all="Unsubscribe from all of these",
        save="Save preferences",
        saved="Your preferences are saved.",
        unsubscribed="You are unsubscribed from {category}.",
        invalid="This link is not valid. Use the link from a recent email.",
        expired="This link has expired. Use the link from a recent email.",
        blocked="No email is being sent to this address (reason: {reason}).",
    ),
    "ru": PageText(
        title="Настройки рассылок",
        intro="Выберите, какие письма получает {address}. Письма об учётной записи, "
        "например сброс пароля, приходят всегда.",
        legend="Присылать мне",
        leave_all="Отписаться от всех этих рассылок",
        save="Сохранить",
        saved="Настройки сохранены.",
        unsubscribed="Вы отписаны от рассылки «{category}».",
        invalid="Ссылка недействительна. Воспользуйтесь ссылкой из недавнего письма.",
        expired="Срок действия ссылки истёк. Воспользуйтесь ссылкой из недавнего письма.",
        blocked="На этот адрес письма не отправляются (причина: {reason}).",
    ),
}

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;
color:#1a1a1a;background:#fff}
h1{font-size:1.5rem}fieldset{border:1px solid #767676;border-radius:4px;padding:1rem}
legend{font-weight:600;padding:0 .25rem}label{display:block;margin:.5rem 0}
input[type=checkbox]{width:1.1rem;height:1.1rem;margin-right:.5rem;vertical-align:-.15rem}
button{font:inherit;margin-top:1rem;padding:.5rem 1rem;border:2px solid #0b57d0;
border-radius:4px;background:#0b57d0;color:#fff;cursor:pointer}
button:focus,input:focus{outline:3px solid #f9a825;outline-offset:2px}
[role=status]{background:#e6f4ea;border-left:4px solid #137333;padding:.5rem 1rem}
[role=alert]{background:#fce8e6;border-left:4px solid #a50e0e;padding:.5rem 1rem}
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_PAGE = _ENV.from_string(
    """<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ text.title }}</title>
<style>{{ style }}</style>
</head>
<body>
<main>
<h1>{{ text.title }}</h1>
{% if notice %}<p role="status">{{ notice }}</p>{% endif %}
{% if blocked %}<p role="alert">{{ blocked }}</p>{% endif %}
<p>{{ intro }}</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<fieldset>
<legend>{{ text.legend }}</legend>
{% for name, receives in categories.items() %}
<label for="c-{{ loop.index }}"><input type="checkbox" id="c-{{ loop.index }}" name="subscribed"
 value="{{ name }}"{% if receives %} checked{% endif %}>{{ label(name) }}</label>
{% endfor %}
</fieldset>
<label for="leave-all"><input type="checkbox" id="leave-all" name="unsubscribed_all"
 value="1"{% if unsubscribed_all %} checked{% endif %}>{{ text.leave_all }}</label>
<button type="submit">{{ text.save }}</button>
</form>
</main>
</body>
</html>
"""
)
_ERROR = _ENV.from_string(
    """<!doctype html>
<html lang="{{ lang }}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ text.title }}</title><style>{{ style }}</style></head>
<body><main><h1>{{ text.title }}</h1><p role="alert">{{ message }}</p></main></body>
</html>
"""
)


def page_text(locale: str) -> tuple[str, PageText]:
    """The page language for a template locale (``ru-RU`` -> ru), English otherwise."""
    lang = locale.lower().replace("_", "-").split("-")[0]
    return (lang, _TEXT[lang]) if lang in _TEXT else ("en", _TEXT["en"])


def category_label(name: str) -> str:
    """``product_updates`` -> ``Product updates``."""
    words = name.replace("_", " ").replace("-", " ").replace(".", " ").strip()
    return words[:1].upper() + words[1:]


def render_page(
    *,
    locale: str,
    address: str,
    action: str,
    csrf: str,
    categories: Mapping[str, bool],
    unsubscribed_all: bool,
    notice: str | None = None,
    blocked_by: str | None = None,
) -> str:
    lang, text = page_text(locale)
    return _PAGE.render(
        lang=lang,
        text=text,
        style=_STYLE,
        intro=text.intro.format(address=address),
        action=action,
        csrf=csrf,
        categories=categories,
        unsubscribed_all=unsubscribed_all,
        notice=notice,
        blocked=text.blocked.format(reason=blocked_by) if blocked_by else None,
        label=category_label,
    )


def render_error(*, locale: str, expired: bool) -> str:
    lang, text = page_text(locale)
    return _ERROR.render(
        lang=lang, text=text, style=_STYLE, message=text.expired if expired else text.invalid
    )

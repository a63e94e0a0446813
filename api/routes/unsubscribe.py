"""``/u/{token}``: the one-click unsubscribe endpoint (RFC 8058) and the preferences page.

No API key: the signed token is the recipient's authority. ``POST /u/{token}`` is what mailbox
providers call; ``GET`` shows the page, whose form posts to ``/u/{token}/preferences`` with a
CSRF token bound to a SameSite=Strict cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.deps import RendererDep, SettingsDep
from api.problems import ApiProblem, problem_doc
from api.responses import OrjsonResponse
from api.routes.suppressions import SuppressionsDep
from notifier.compose.rendering import TemplateRenderer
from notifier.errors import InvalidUnsubscribeToken
from notifier.settings import Settings
from notifier.unsubscribe.page import PAGE_CSP, page_text, render_error, render_page
from notifier.unsubscribe.preferences import read_preferences, unsubscribe, update_preferences
from notifier.unsubscribe.tokens import UnsubscribeToken, read_token

__all__ = ["router"]

router = APIRouter(prefix="/u", tags=["unsubscribe"])

CSRF_COOKIE = "notifier_csrf"
#: How long a loaded page's form stays valid.
CSRF_MAX_AGE = 24 * 3600
_CSRF_SALT = "notifier.unsubscribe.csrf"
_HTML: dict[str, Any] = {"content": {"text/html": {}}}
_PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "A forged, damaged or expired token (an HTML page).", **_HTML},
}
_PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _token_or_problem(settings: Settings, token: str) -> UnsubscribeToken:
    try:
        return read_token(settings, token)
    except InvalidUnsubscribeToken as exc:
        raise ApiProblem(400, f"{exc}.", slug="invalid-token") from None


def _known(renderer: TemplateRenderer, extra: str) -> list[str]:
    # A category no template declares any more (an old link) is still shown and honoured.
    return sorted({*renderer.categories(), extra})


def _csrf_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        [*settings.previous_signing_secrets, settings.signing_secret], salt=_CSRF_SALT
    )


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


def _error_page(settings: Settings, exc: InvalidUnsubscribeToken) -> HTMLResponse:
    return _html(render_error(locale=settings.default_locale, expired=exc.expired), 400)


@router.post(
    "/{token}",
    summary="One-click unsubscribe (RFC 8058)",
    responses={**problem_doc(400, "A forged, damaged or expired token: nothing changes.")},
)
async def one_click(token: str, settings: SettingsDep, suppressions: SuppressionsDep) -> Response:
    """Mailbox providers POST ``List-Unsubscribe=One-Click`` here; the recipient leaves the
    token's category (a suppression with reason ``unsubscribe``). Repeating it changes
    nothing."""
    found = _token_or_problem(settings, token)
    changed = await unsubscribe(suppressions, found.recipient, found.category, source="one-click")
    return OrjsonResponse(
        {"unsubscribed": True, "category": found.category, "changed": changed},
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/{token}",
    summary="The recipient's preferences page",
    response_class=HTMLResponse,
    responses=_PAGE_RESPONSES,
)
async def preferences_page(
    token: str,
    request: Request,
    settings: SettingsDep,
    renderer: RendererDep,
    suppressions: SuppressionsDep,
) -> Response:
    try:
        found = read_token(settings, token)
    except InvalidUnsubscribeToken as exc:
        return _error_page(settings, exc)
    nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    csrf = _csrf_serializer(settings).dumps([nonce, _token_digest(token)])
    prefs = await read_preferences(suppressions, found.recipient, _known(renderer, found.category))
    notice = None
    if request.query_params.get("saved") == "1":
        notice = page_text(found.locale)[1].saved
    body = render_page(
        locale=found.locale,
        address=prefs.address,
        # Relative, like the redirect and the cookie's default path: the pages keep working
        # when PUBLIC_URL puts the API under a path prefix.
        action=f"{urllib.parse.quote(token, safe='')}/preferences",
        csrf=csrf,
        categories=prefs.categories,
        unsubscribed_all=prefs.unsubscribed_all,
        notice=notice,
        blocked_by=prefs.blocked_by,
    )
    response = _html(body)
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        max_age=CSRF_MAX_AGE,
        path=None,  # the default path: this page's directory, /u (or /<prefix>/u)
        httponly=True,
        samesite="strict",
        secure=(settings.public_url or "").startswith("https://"),
    )
    return response


@router.post(
    "/{token}/preferences",
    summary="The preferences page's form (CSRF-protected)",
    response_class=HTMLResponse,
    status_code=303,
    responses={
        303: {"description": "Saved: back to the page."},
        **_PAGE_RESPONSES,
        403: {"description": "No valid CSRF token: nothing changes (an HTML page).", **_HTML},
    },
)
async def save_preferences(
    token: str,
    request: Request,
    settings: SettingsDep,
    renderer: RendererDep,
    suppressions: SuppressionsDep,
) -> Response:
    try:
        found = read_token(settings, token)
    except InvalidUnsubscribeToken as exc:
        return _error_page(settings, exc)
    form = _parse_form(await request.body())
    if not _csrf_ok(settings, token, request.cookies.get(CSRF_COOKIE), form.get("csrf")):
        # A cross-site post, or a page loaded too long ago: nothing changes.
        return _html(render_error(locale=found.locale, expired=True), 403)
    known = _known(renderer, found.category)
    wanted = set(form.get_all("subscribed"))
    await update_preferences(
        suppressions,
        found.recipient,
        categories={category: category in wanted for category in known},
        unsubscribed_all=form.get("unsubscribed_all") == "1",
        source="preferences-page",
        known=known,
    )
    location = f"../{urllib.parse.quote(token, safe='')}?saved=1"
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


class _Form:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.pairs if key == name), None)

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def _parse_form(body: bytes) -> _Form:
    # application/x-www-form-urlencoded, what a plain HTML form sends.
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return _Form([])
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=200)
    except ValueError:
        return _Form([])
    return _Form(pairs)


def _csrf_ok(settings: Settings, token: str, cookie: str | None, field: str | None) -> bool:
    if not cookie or not field:
        return False
    try:
        data: Any = _csrf_serializer(settings).loads(field, max_age=CSRF_MAX_AGE)
    except BadSignature:
        return False
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data)):
        return False
    return hmac.compare_digest(data[0], cookie) and hmac.compare_digest(
        data[1], _token_digest(token)
    )

"""The development inbox's web side: HTML pages and a MailHog-compatible JSON API."""

from __future__ import annotations

from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from notifier.devinbox.deliverability import (
    Unsubscribe,
    dkim_results,
    one_click,
    unsubscribe_links,
)
from notifier.devinbox.store import MaildirStore, MessageNotFound, StoredMessage

__all__ = ["create_app", "mailhog_item"]

#: The inbox list shows at most this many messages; the JSON API pages through all of them.
PAGE_SIZE = 200

# Mail HTML runs in a sandboxed srcdoc iframe; the policy is a second fence, and an srcdoc
# document inherits it, so no script runs in the page or in the mail.
# Nothing loads but the page's own inline style and images embedded in the mail (data:, cid:):
# a remote image (a tracking pixel) in a message is never fetched when the message is opened;
# the sandboxed srcdoc frame inherits this policy. No other site may frame the inbox.
_PAGE_POLICY = (
    "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_NO_SNIFF = {"X-Content-Type-Options": "nosniff"}


def create_app(store: MaildirStore, *, dkim_records: Mapping[str, str] | None = None) -> FastAPI:
    """The inbox web application over ``store``; ``dkim_records`` (DNS name -> TXT value)
    are the keys DKIM signatures are checked against."""
    records = dict(dkim_records or {})
    templates = Environment(
        loader=FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=StrictUndefined,
    )
    templates.filters["message_url"] = lambda m: "/messages/" + quote(m.id, safe="")
    app = FastAPI(title="notifier devinbox", docs_url=None, redoc_url=None, openapi_url=None)

    def page(name: str, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(**context)
        return HTMLResponse(html, headers={"Content-Security-Policy": _PAGE_POLICY, **_NO_SNIFF})

    def load(message_id: str) -> StoredMessage:
        try:
            return store.get(message_id)
        except MessageNotFound:
            raise HTTPException(404, f"no message with id {message_id!r}") from None

    def links_of(message: StoredMessage) -> Unsubscribe | None:
        return unsubscribe_links(
            message.header("List-Unsubscribe"), message.header("List-Unsubscribe-Post")
        )

    def message_page_of(
        message: StoredMessage, links: Unsubscribe | None, result: dict[str, Any] | None
    ) -> HTMLResponse:
        return page(
            "message.html",
            message=message,
            base_url="/messages/" + quote(message.id, safe=""),
            raw=message.raw.decode("utf-8", "replace"),
            dkim=dkim_results(message.raw, records),
            dkim_configured=bool(records),
            unsubscribe=links,
            unsubscribe_result=result,
        )

    @app.get("/", response_class=HTMLResponse)
    def inbox() -> HTMLResponse:
        messages = store.list()
        return page("inbox.html", messages=messages[:PAGE_SIZE], total=len(messages))

    @app.get("/messages/{message_id}", response_class=HTMLResponse)
    def message_page(message_id: str) -> HTMLResponse:
        message = load(message_id)
        return message_page_of(message, links_of(message), None)

    @app.post("/messages/{message_id}/unsubscribe", response_class=HTMLResponse)
    def unsubscribe(message_id: str, request: Request) -> HTMLResponse:
        # The one-click POST a mailbox provider makes, to the URL in the message's own header.
        _refuse_cross_site(request)
        message = load(message_id)
        links = links_of(message)
        if links is None or links.http_uri is None or not links.one_click:
            raise HTTPException(400, "the message offers no one-click unsubscribe")
        status, body = one_click(links.http_uri)
        return message_page_of(message, links, {"status": status, "body": body})

    @app.get("/messages/{message_id}/raw")
    def raw_source(message_id: str) -> Response:
        message = load(message_id)
        return Response(message.raw, media_type="text/plain; charset=utf-8", headers=_NO_SNIFF)

    @app.get("/messages/{message_id}/attachments/{index}")
    def attachment(message_id: str, index: int) -> Response:
        attachments = load(message_id).attachments()
        if not 0 <= index < len(attachments):
            raise HTTPException(404, f"message {message_id!r} has no attachment {index}")
        found = attachments[index]
        # Always a download: an HTML or SVG attachment must not render in the inbox's origin.
        headers = {"Content-Disposition": content_disposition(found.filename), **_NO_SNIFF}
        return Response(found.data, media_type=found.content_type, headers=headers)

    @app.post("/delete-all")
    def delete_all_form(request: Request) -> RedirectResponse:
        _refuse_cross_site(request)
        store.delete_all()
        return RedirectResponse("/", status_code=303)

    @app.get("/api/v2/messages")
    def list_v2(
        start: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        messages = store.list()
        items = [mailhog_item(m) for m in messages[start : start + limit]]
        return {"total": len(messages), "count": len(items), "start": start, "items": items}

    @app.get("/api/v1/messages")
    def list_v1() -> list[dict[str, Any]]:
        return [mailhog_item(m) for m in store.list()]

    @app.get("/api/v1/messages/{message_id}")
    def get_v1(message_id: str) -> dict[str, Any]:
        return mailhog_item(load(message_id))

    @app.delete("/api/v1/messages")
    def delete_all_v1() -> Response:
        store.delete_all()
        return Response(status_code=200)

    @app.delete("/api/v1/messages/{message_id}")
    def delete_v1(message_id: str) -> Response:
        try:
            store.delete(message_id)
        except MessageNotFound:
            raise HTTPException(404, f"no message with id {message_id!r}") from None
        return Response(status_code=200)

    return app


def mailhog_item(message: StoredMessage) -> dict[str, Any]:
    """``message`` in the shape of MailHog's ``data.Message`` JSON."""
    data = _text(message.raw)
    return {
        "ID": message.id,
        "From": _path(message.envelope.mail_from),
        "To": [_path(rcpt) for rcpt in message.envelope.rcpt_tos],
        "Content": {
            "Headers": _raw_headers(message.email),
            "Body": _text(message.body_source),
            "Size": len(message.raw),
            "MIME": None,
        },
        "Created": _rfc3339(message),
        "MIME": _mime(message.email),
        "Raw": {
            "From": message.envelope.mail_from,
            "To": list(message.envelope.rcpt_tos),
            "Data": data,
            "Helo": message.envelope.helo,
        },
    }


def content_disposition(filename: str) -> str:
    """An ``attachment`` Content-Disposition with an ASCII fallback and the RFC 5987 name."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _refuse_cross_site(request: Request) -> None:
    # A page on another site could post the delete form to localhost; browsers send Origin.
    origin = request.headers.get("origin")
    # "null" is what a sandboxed frame or a data: page sends: never this inbox's own form.
    if origin and (origin == "null" or urlsplit(origin).netloc != request.headers.get("host")):
        raise HTTPException(403, "cross-site request refused")


def _path(address: str) -> dict[str, Any]:
    mailbox, at, domain = address.rpartition("@")
    if not at:
        mailbox, domain = address, ""
    return {"Relays": None, "Mailbox": mailbox, "Domain": domain, "Params": ""}


def _rfc3339(message: StoredMessage) -> str:
    created = message.envelope.received_at.isoformat(timespec="microseconds")
    return created.removesuffix("+00:00") + "Z" if created.endswith("+00:00") else created


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _raw_headers(part: Message) -> dict[str, list[str]]:
    """Header values as sent (encoded words kept), unfolded, grouped by name."""
    headers: dict[str, list[str]] = {}
    for name, value in part.raw_items():
        text = _text(str(value).encode("utf-8", "surrogateescape"))
        headers.setdefault(name, []).append(text.replace("\r\n", "").replace("\n", ""))
    return headers


def _mime(part: Message) -> dict[str, Any] | None:
    """MailHog's ``MIME.Parts`` tree for a multipart message, else None."""
    payload = part.get_payload()
    if part.get_content_maintype() != "multipart" or not isinstance(payload, list):
        return None
    parts = []
    for child in payload:
        if not isinstance(child, Message):
            continue
        body = "" if child.is_multipart() else child.get_payload()
        body = body if isinstance(body, str) else ""
        parts.append(
            {
                "Headers": _raw_headers(child),
                "Body": _text(body.encode("utf-8", "surrogateescape")),
                "Size": len(body),
                "MIME": _mime(child),
            }
        )
    return {"Parts": parts}

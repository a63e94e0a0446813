"""What the dev inbox shows about a message's deliverability: its DKIM signatures checked
against the configured keys, and its List-Unsubscribe links (with the one-click POST).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import dkim
import httpx

from notifier.delivery.dkim import load_signer, verify_signatures
from notifier.errors import ConfigurationError
from notifier.settings import load_settings

__all__ = [
    "DkimResult",
    "Unsubscribe",
    "configured_dkim_records",
    "dkim_results",
    "one_click",
    "unsubscribe_links",
]

_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)")


@dataclass(frozen=True, slots=True)
class DkimResult:
    domain: str
    selector: str
    algorithm: str
    #: "pass", "fail", or "no key" (the selector is not one the configured keys publish).
    result: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    uris: tuple[str, ...]
    one_click: bool

    @property
    def http_uri(self) -> str | None:
        return next((u for u in self.uris if u.startswith(("https://", "http://"))), None)


def configured_dkim_records() -> dict[str, str]:
    """The TXT records of the keys DKIM_* configure (empty when DKIM is off or broken)."""
    try:
        signer = load_signer(load_settings())
    except ConfigurationError:
        return {}
    return signer.dns_records() if signer is not None else {}


def dkim_results(raw: bytes, records: Mapping[str, str]) -> list[DkimResult]:
    """Each DKIM-Signature of ``raw``, checked against ``records`` only (no DNS)."""
    try:
        headers = dkim.DKIM(raw).headers
    except dkim.DKIMException:
        return []
    signatures = [value for name, value in headers if name.lower() == b"dkim-signature"]
    verdicts = verify_signatures(raw, records)
    known = {name.lower().rstrip(".") for name in records}
    results = []
    for value, verdict in zip(signatures, verdicts, strict=True):
        tags = {k.decode(): v.strip() for k, v in _TAG.findall(re.sub(rb"\s+", b" ", value))}
        domain = tags.get("d", b"").decode("ascii", "replace")
        selector = tags.get("s", b"").decode("ascii", "replace")
        found = f"{selector}._domainkey.{domain}".lower() in known
        results.append(
            DkimResult(
                domain=domain,
                selector=selector,
                algorithm=tags.get("a", b"").decode("ascii", "replace"),
                result="pass" if verdict else ("fail" if found else "no key"),
            )
        )
    return results


def unsubscribe_links(list_unsubscribe: str, list_unsubscribe_post: str) -> Unsubscribe | None:
    """The URIs of a List-Unsubscribe header (RFC 2369), and whether one-click is offered."""
    if not list_unsubscribe:
        return None
    uris = tuple(re.findall(r"<([^>]+)>", list_unsubscribe))
    one_click = list_unsubscribe_post.strip() == "List-Unsubscribe=One-Click"
    return Unsubscribe(uris=uris, one_click=one_click) if uris else None


def one_click(uri: str) -> tuple[int, str]:
    """POST ``List-Unsubscribe=One-Click`` to ``uri`` as a mailbox provider does (RFC 8058)."""
    try:
        response = httpx.post(
            uri, data={"List-Unsubscribe": "One-Click"}, timeout=10, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    return response.status_code, response.text[:500]

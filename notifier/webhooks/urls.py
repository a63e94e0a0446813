"""Which endpoint URLs notifier may call: https in production, no internal addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from notifier.errors import UnsafeWebhookUrl

__all__ = ["check_url", "check_url_syntax", "forbidden_address"]

#: Cloud metadata services; also link-local or private, named so the error says what they are.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)


def forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is internal (loopback, private, ...), or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for reason, flag in (
        ("a loopback address", address.is_loopback),
        ("an unspecified address", address.is_unspecified),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a private address", address.is_private),
        ("a reserved address", address.is_reserved),
    ):
        if flag:
            return reason
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a carrier-grade NAT address"
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")


def check_url_syntax(url: str, *, production: bool) -> tuple[str, int]:
    """Check the URL's form; returns its host and port. Raises UnsafeWebhookUrl."""
    if any(ch in url for ch in "\r\n\t ") or len(url) > 2048:
        raise UnsafeWebhookUrl(url, "must be one absolute URL without spaces (at most 2048 chars)")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise UnsafeWebhookUrl(url, "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhookUrl(url, "must be an http:// or https:// URL")
    if production and parts.scheme != "https":
        raise UnsafeWebhookUrl(url, "must be https:// in production")
    if parts.username or parts.password:
        raise UnsafeWebhookUrl(url, "must not carry credentials; authenticate with the signature")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeWebhookUrl(url, "has an invalid port") from None
    if not host:
        raise UnsafeWebhookUrl(url, "has no host")
    return host, port or (443 if parts.scheme == "https" else 80)


async def check_url(url: str, *, production: bool, allow_private: bool) -> None:
    """Refuse a URL notifier must not call; resolves its host unless private ones are allowed.

    Checked when an endpoint is saved and again before each delivery, so a name that later
    resolves to an internal address (DNS rebinding) is refused then too.
    """
    host, port = check_url_syntax(url, production=production)
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as exc:
            raise UnsafeWebhookUrl(url, f"its host {host!r} does not resolve: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        reason = forbidden_address(address)
        if reason is not None:
            raise UnsafeWebhookUrl(
                url,
                f"resolves to {address}, {reason}; set WEBHOOK_ALLOW_PRIVATE=true to allow it",
            )

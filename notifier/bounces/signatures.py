"""Checking that a provider webhook really comes from the provider.

* SES via SNS: an RSA signature over the message's canonical fields, made with a certificate
  fetched from ``SigningCertURL``, which must match SNS_CERT_URL_PATTERN.
* SendGrid: an ECDSA (P-256, SHA-256) signature over timestamp + body, with the account's
  verification key.
* Postmark: HTTP basic auth with the configured user and password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from notifier.errors import WebhookRejected

__all__ = [
    "SnsCertificates",
    "WebhookRejected",
    "check_basic_auth",
    "sns_string_to_sign",
    "verify_sendgrid",
]


_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SNS_FIELDS["UnsubscribeConfirmation"] = _SNS_FIELDS["SubscriptionConfirmation"]


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical text SNS signs: ``Name\\nValue\\n`` for each field, in AWS's order."""
    kind = message.get("Type")
    names = _SNS_FIELDS.get(str(kind))
    if names is None:
        raise WebhookRejected(f"unknown SNS message type {kind!r}")
    lines = []
    for name in names:
        if name not in message:
            if name == "Subject":
                continue
            raise WebhookRejected(f"SNS message lacks {name}")
        lines.append(f"{name}\n{message[name]}\n")
    return "".join(lines).encode()


class SnsCertificates:
    """Fetches SNS signing certificates from allowlisted URLs only, and caches them."""

    def __init__(self, url_pattern: str, *, timeout: float = 10.0) -> None:
        self.pattern = re.compile(url_pattern)
        self.timeout = timeout
        self._cache: dict[str, rsa.RSAPublicKey] = {}

    def allowed(self, url: str) -> bool:
        return bool(self.pattern.match(url))

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        if not self.allowed(url):
            raise WebhookRejected(
                "SigningCertURL is not an allowed SNS certificate URL (SNS_CERT_URL_PATTERN)"
            )
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                response = await client.get(url)
                response.raise_for_status()
            certificate = x509.load_pem_x509_certificate(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            raise WebhookRejected(f"the SNS signing certificate could not be read: {exc}") from exc
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookRejected("the SNS signing certificate does not hold an RSA key")
        self._cache[url] = key
        return key

    async def verify(self, message: Mapping[str, Any]) -> None:
        """Raise WebhookRejected unless ``message`` carries a valid SNS signature."""
        version = str(message.get("SignatureVersion", ""))
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is SHA1withRSA
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise WebhookRejected(f"unsupported SNS SignatureVersion {version!r}")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except binascii.Error as exc:
            raise WebhookRejected("the SNS Signature is not base64") from exc
        key = await self.public_key(str(message.get("SigningCertURL", "")))
        try:
            key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        except InvalidSignature as exc:
            raise WebhookRejected("the SNS signature does not match the message") from exc


def verify_sendgrid(*, public_key: str, signature: str, timestamp: str, body: bytes) -> None:
    """Raise WebhookRejected unless SendGrid's ECDSA signature over timestamp+body is valid."""
    if not signature or not timestamp:
        raise WebhookRejected("the SendGrid signature headers are missing", status=401)
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key))
        raw_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise WebhookRejected(f"the SendGrid signature could not be read: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRejected("SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve key")
    try:
        key.verify(raw_signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise WebhookRejected("the SendGrid signature does not match the body") from exc


def check_basic_auth(authorization: str | None, *, username: str, password: str) -> None:
    """Raise WebhookRejected (401) unless ``authorization`` is basic auth with these values."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookRejected("basic authentication is required", status=401)
    try:
        user, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise WebhookRejected("malformed basic authentication", status=401) from exc
    # Both compared, always, so the timing says nothing about which one was wrong.
    good_user = hmac.compare_digest(user.encode(), username.encode())
    good_secret = hmac.compare_digest(secret.encode(), password.encode())
    if not (sep and good_user and good_secret):
        raise WebhookRejected("wrong webhook credentials", status=401)

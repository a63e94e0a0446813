"""DKIM signing (RFC 6376) of the exact bytes sent, with dkimpy: one key, or RSA plus Ed25519.

Keys are read and checked once per process (:func:`load_signer`); a bad one is a
ConfigurationError naming the setting, which stops the worker at start-up.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from notifier.errors import ConfigurationError
from notifier.settings import Settings

__all__ = [
    "DkimKey",
    "DkimSigner",
    "generate_key",
    "load_signer",
    "parse_private_key",
    "verify_signatures",
]

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
#: RSA keys shorter than this are ignored by receivers (RFC 8301 says at least 1024 bits).
MIN_RSA_BITS = 1024
_PROBE = (
    b"From: probe@example.com\r\nTo: probe@example.com\r\nSubject: probe\r\n"
    b"Date: Mon, 30 Nov 2026 00:00:00 +0000\r\n\r\nprobe\r\n"
)


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A parsed signing key with its selector and domain, in the form dkimpy signs with."""

    selector: str
    domain: str
    algorithm: Algorithm
    #: PKCS#1 PEM for RSA, the base64 32-byte seed for Ed25519 (what ``dkim.sign`` takes).
    signing_key: bytes
    #: The base64 ``p=`` value of the DNS record.
    public_key: str

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def dns_record(self) -> str:
        """The TXT record to publish at :attr:`dns_name`."""
        kind = "rsa" if self.algorithm == "rsa-sha256" else "ed25519"
        return f"v=DKIM1; k={kind}; p={self.public_key}"


class DkimSigner:
    """Prepends one DKIM-Signature per key to a serialized message.

    Called on the bytes that go into SMTP DATA, after the MIME build: nothing may change
    them afterwards (a relay re-folding or re-encoding breaks the signature).
    """

    def __init__(self, keys: Sequence[DkimKey], *, headers: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a DkimSigner needs at least one key")
        self.keys = tuple(keys)
        self.headers = tuple(h.encode("ascii") for h in headers)

    def __call__(self, message: bytes) -> bytes:
        # Every signature covers the unsigned message: a verifier skips DKIM-Signature fields
        # not listed in h=, so the order of the prepended signatures does not matter.
        signatures = [
            dkim.sign(
                message,
                key.selector.encode("ascii"),
                key.domain.encode("ascii"),
                key.signing_key,
                signature_algorithm=key.algorithm.encode("ascii"),
                include_headers=list(self.headers),
                linesep=b"\r\n",
            )
            for key in self.keys
        ]
        return b"".join(signatures) + message

    def dns_records(self) -> dict[str, str]:
        """Name -> TXT value for each key, what a verifier looks up."""
        return {key.dns_name: key.dns_record for key in self.keys}


def parse_private_key(data: bytes, *, selector: str, domain: str, setting: str) -> DkimKey:
    """Parse a PEM key (RSA or Ed25519, PKCS#1 or PKCS#8) or a base64 Ed25519 seed.

    Raises ConfigurationError naming ``setting`` for anything else, never the key itself.
    """
    text = data.strip()
    if not text:
        raise ConfigurationError(f"{setting}: the DKIM private key is empty")
    if b"-----BEGIN" in text:
        try:
            loaded = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            # The library's message says what is wrong with the format, not the key bytes.
            raise ConfigurationError(f"{setting}: not a usable PEM private key ({exc})") from None
        if isinstance(loaded, rsa.RSAPrivateKey):
            return _rsa_key(loaded, selector=selector, domain=domain, setting=setting)
        if isinstance(loaded, ed25519.Ed25519PrivateKey):
            return _ed25519_key(loaded, selector=selector, domain=domain)
        raise ConfigurationError(
            f"{setting}: a {type(loaded).__name__} cannot sign DKIM; use RSA or Ed25519"
        )
    try:
        seed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ConfigurationError(
            f"{setting}: neither a PEM private key nor a base64 32-byte Ed25519 key"
        )
    return _ed25519_key(
        ed25519.Ed25519PrivateKey.from_private_bytes(seed), selector=selector, domain=domain
    )


def _rsa_key(key: rsa.RSAPrivateKey, *, selector: str, domain: str, setting: str) -> DkimKey:
    if key.key_size < MIN_RSA_BITS:
        raise ConfigurationError(
            f"{setting}: a {key.key_size}-bit RSA key is too short; use 2048 bits"
        )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(
        selector=selector,
        domain=domain,
        algorithm="rsa-sha256",
        signing_key=pem,
        public_key=base64.b64encode(spki).decode("ascii"),
    )


def _ed25519_key(key: ed25519.Ed25519PrivateKey, *, selector: str, domain: str) -> DkimKey:
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return DkimKey(
        selector=selector,
        domain=domain,
        algorithm="ed25519-sha256",
        signing_key=base64.b64encode(seed),
        public_key=base64.b64encode(public).decode("ascii"),
    )


def _read_key(
    value: object, path: Path | None, *, setting: str, file_setting: str
) -> tuple[bytes, str]:
    if path is not None:
        try:
            return path.read_bytes(), file_setting
        except OSError as exc:
            raise ConfigurationError(
                f"{file_setting}: cannot read {str(path)!r}: {exc.strerror}"
            ) from None
    secret = getattr(value, "get_secret_value", None)
    text = secret() if callable(secret) else str(value)
    # Environment variables often carry PEM with literal "\n" for line breaks.
    return text.replace("\\n", "\n").encode("utf-8"), setting


def load_signer(settings: Settings) -> DkimSigner | None:
    """The signer DKIM_* configure, or None when DKIM is off; ConfigurationError on a bad key.

    Each key signs and verifies a probe message here, so a key dkimpy cannot use is refused
    at start-up rather than failing every send.
    """
    # Checked here rather than in Settings: the worker's start-up check prints these as one
    # line naming the setting, where a settings error surfaces inside Celery's app loading.
    for prefix in ("DKIM", "DKIM_SECONDARY"):
        attr = prefix.lower()
        if (
            getattr(settings, f"{attr}_private_key") is not None
            and getattr(settings, f"{attr}_private_key_file") is not None
        ):
            raise ConfigurationError(
                f"{prefix}_PRIVATE_KEY and {prefix}_PRIVATE_KEY_FILE are exclusive: set one"
            )
    primary = settings.dkim_private_key is not None or settings.dkim_private_key_file is not None
    secondary = (
        settings.dkim_secondary_private_key is not None
        or settings.dkim_secondary_private_key_file is not None
    )
    if not primary:
        if settings.dkim_domain or settings.dkim_selector or settings.dkim_secondary_selector:
            raise ConfigurationError(
                "DKIM_PRIVATE_KEY or DKIM_PRIVATE_KEY_FILE must be set with DKIM_DOMAIN and "
                "DKIM_SELECTOR"
            )
        return None
    if not (settings.dkim_domain and settings.dkim_selector):
        raise ConfigurationError("DKIM_DOMAIN and DKIM_SELECTOR must be set with a DKIM key")
    if secondary != bool(settings.dkim_secondary_selector):
        raise ConfigurationError(
            "DKIM_SECONDARY_SELECTOR and DKIM_SECONDARY_PRIVATE_KEY(_FILE) go together"
        )
    keys: list[DkimKey] = []
    sources: list[tuple[str, object, Path | None, str]] = [
        (
            settings.dkim_selector,
            settings.dkim_private_key,
            settings.dkim_private_key_file,
            "DKIM_PRIVATE_KEY",
        )
    ]
    if settings.dkim_secondary_selector:
        sources.append(
            (
                settings.dkim_secondary_selector,
                settings.dkim_secondary_private_key,
                settings.dkim_secondary_private_key_file,
                "DKIM_SECONDARY_PRIVATE_KEY",
            )
        )
    for selector, value, path, name in sources:
        data, setting = _read_key(value, path, setting=name, file_setting=f"{name}_FILE")
        key = parse_private_key(
            data, selector=selector, domain=settings.dkim_domain, setting=setting
        )
        _probe(key, setting=setting)
        keys.append(key)
    return DkimSigner(keys, headers=settings.dkim_headers)


def _probe(key: DkimKey, *, setting: str) -> None:
    try:
        signed = DkimSigner([key], headers=["From", "To", "Subject", "Date"])(_PROBE)
    except dkim.DKIMException as exc:
        raise ConfigurationError(f"{setting}: dkimpy cannot sign with this key: {exc}") from None
    if verify_signatures(signed, {key.dns_name: key.dns_record}) != [True]:
        raise ConfigurationError(f"{setting}: a probe signature does not verify")


def verify_signatures(message: bytes, records: Mapping[str, str]) -> list[bool]:
    """Verify every DKIM-Signature of ``message`` against ``records`` (name -> TXT value).

    For tests and the dev inbox: no DNS, only the given records.
    """
    dnsfunc = _dns_from(records)
    checker = dkim.DKIM(message)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    results: list[bool] = []
    for index in range(count):
        try:
            results.append(bool(checker.verify(idx=index, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            results.append(False)
    return results


def _dns_from(records: Mapping[str, str]) -> Callable[..., bytes | None]:
    lookup = {name.lower().rstrip("."): value.encode("ascii") for name, value in records.items()}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return lookup.get(name.decode("ascii").lower().rstrip("."))

    return dnsfunc


def generate_key(algorithm: Literal["rsa", "ed25519"], *, bits: int = 2048) -> bytes:
    """A new private key as PKCS#8 PEM, for ``notifier dkim keygen``."""
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

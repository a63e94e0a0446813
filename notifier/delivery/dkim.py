"""DKIM signing (RFC 6376) of the exact bytes sent, with dkimpy: one key, or RSA plus Ed25519.

Keys are read and checked once per process (:func:`load_signer`); a bad one is a
ConfigurationError naming the setting, which stops the worker at start-up. dkimpy
canonicalizes, hashes and formats; the signature itself is made by OpenSSL (cryptography)
with the key parsed at start-up: dkimpy's own RSA is pure Python, about 6 ms of CPU per
message holding the GIL, against well under 1 ms here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

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
    #: The parsed private key (parsed once, at start-up).
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    #: The base64 ``p=`` value of the DNS record.
    public_key: str

    def sign_digest(self, digest: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 over the SHA-256 digest, or Ed25519 over it (RFC 8463)."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return self.private_key.sign(digest)

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
        parsed = _Message(message)
        return b"".join(parsed.signature(key, self.headers) for key in self.keys) + message

    def dns_records(self) -> dict[str, str]:
        """Name -> TXT value for each key, what a verifier looks up."""
        return {key.dns_name: key.dns_record for key in self.keys}


class _Message(dkim.DKIM):  # type: ignore[misc]
    """dkimpy's message model, signing with an already parsed key.

    The steps and output of ``dkim.DKIM.sign`` (relaxed/simple, ``i=@domain``, no ``l=``) and
    its ``gen_header``, with the signature made by :meth:`DkimKey.sign_digest`.
    """

    def __init__(self, message: bytes) -> None:
        super().__init__(message, linesep=b"\r\n")
        self._policy = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/simple")
        self._body_hash = base64.b64encode(
            hashlib.sha256(self._policy.canonicalize_body(self.body)).digest()
        )

    def signature(self, key: DkimKey, headers: tuple[bytes, ...]) -> bytes:
        include = tuple(h.lower() for h in headers)
        domain, name = key.domain.encode("ascii"), b"DKIM-Signature"
        fields = [
            (b"v", b"1"),
            (b"a", key.algorithm.encode("ascii")),
            (b"c", self._policy.to_c_value()),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", key.selector.encode("ascii")),
            (b"t", str(int(time.time())).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", self._body_hash),
            # Forces b= onto its own line, so folding after signing changes no other tag.
            (b"b", b"0" * 60),
        ]
        value = dkim.fold(b"; ".join(b"=".join(x) for x in fields), namelen=len(name))
        value = dkim.RE_BTAG.sub(b"\\1", value)
        hasher = hashlib.sha256()
        dkim.hash_headers(
            hasher,
            self._policy,
            self._policy.canonicalize_headers(self.headers),
            include,
            (name, b" " + value),
            dict(fields),
        )
        fields[-1] = (b"b", base64.b64encode(key.sign_digest(hasher.digest())))
        value = b"; ".join(b"=".join(x) for x in fields) + b"\r\n"
        folded: bytes = dkim.fold(value, namelen=len(name), linesep=b"\r\n")
        return name + b": " + folded


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
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(
        selector=selector,
        domain=domain,
        algorithm="rsa-sha256",
        private_key=key,
        public_key=base64.b64encode(spki).decode("ascii"),
    )


def _ed25519_key(key: ed25519.Ed25519PrivateKey, *, selector: str, domain: str) -> DkimKey:
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return DkimKey(
        selector=selector,
        domain=domain,
        algorithm="ed25519-sha256",
        private_key=key,
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
    except (dkim.DKIMException, ValueError) as exc:
        raise ConfigurationError(f"{setting}: cannot sign with this key: {exc}") from None
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

"""Email address parsing and header-value checks: the gate every address and header passes.

Pure functions over strings; validation of the address itself is delegated to ``email-validator``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import idna
from email_validator import EmailNotValidError, validate_email

from notifier.errors import HeaderInjection, InvalidNotification

__all__ = [
    "Address",
    "check_custom_headers",
    "check_header_value",
    "normalize_address",
    "parse_address",
    "parse_address_list",
]

#: A bare ``local@domain``, as bounces, suppressions and preferences key addresses.
_BARE_ADDRESS = re.compile(r"^[^\s@<>]+@[^\s@<>]+$")

#: Characters that end a header line (or a C string) and so could smuggle in another header.
_INJECTION_CHARS = ("\r", "\n", "\x00")

#: RFC 5322 ``ftext``: printable US-ASCII except ":"; a custom name also needs a non-empty tail,
#: and is kept within 76 characters so that "Name: value" can start on one 78-character line.
_FIELD_NAME = re.compile(r"X-[\x21-\x39\x3b-\x7e]{1,74}", re.IGNORECASE)

#: Headers an email provider's relay reads as instructions rather than passing on: SendGrid's
#: X-SMTPAPI can add thousands of hidden recipients, Mailgun/SES/Postmark/Mandrill/SparkPost/
#: Mailjet ones change tracking, routing or the sending identity. Lower-cased prefixes.
RELAY_CONTROL_HEADERS = (
    "x-smtpapi",
    "x-mailgun-",
    "x-ses-",
    "x-pm-",
    "x-mc-",
    "x-msys-",
    "x-mj-",
    "x-mailjet-",
    "x-sg-",
    "x-sendgrid-",
)

#: Characters that force a display name into quotes when an address is shown (RFC 5322 specials).
_NAME_SPECIALS = frozenset('()<>[]:;@\\,."')

_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class Address:
    """A validated mailbox: normalized ``addr_spec`` (Unicode domain allowed) and a display name.

    >>> str(Address("user@example.com", "Иван Петров"))
    'Иван Петров <user@example.com>'
    """

    addr_spec: str
    display_name: str = ""

    @property
    def envelope(self) -> str:
        """The form for SMTP ``MAIL FROM`` / ``RCPT TO``.

        ASCII with an IDNA-encoded domain when the local part is ASCII; otherwise the Unicode
        ``addr_spec``, which only an SMTPUTF8 server accepts.
        """
        local, _, domain = self.addr_spec.rpartition("@")
        if not local.isascii() or domain.isascii():
            return self.addr_spec
        return f"{local}@{_ascii_domain(domain)}"

    def __str__(self) -> str:
        if not self.display_name:
            return self.addr_spec
        name = self.display_name
        if any(char in _NAME_SPECIALS for char in name):
            escaped = name.replace("\\", "\\\\").replace('"', '\\"')
            name = f'"{escaped}"'
        return f"{name} <{self.addr_spec}>"


def check_header_value(value: str, *, field: str) -> str:
    """Return ``value`` unchanged, or raise :class:`HeaderInjection` if it holds CR, LF or NUL."""
    if any(char in value for char in _INJECTION_CHARS):
        raise HeaderInjection(f"{field} must not contain line breaks or NUL", field=field)
    return value


def parse_address(value: str, *, field: str) -> Address:
    """Parse ``"a@b.com"`` or ``"Name <a@b.com>"`` (name may be quoted) into an :class:`Address`.

    Raises :class:`HeaderInjection` for CR/LF/NUL and :class:`InvalidNotification` for anything
    else that is not one valid mailbox; both carry ``field``.
    """
    if not isinstance(value, str):
        raise InvalidNotification(
            f"an email address must be a string, not {type(value).__name__}", field=field
        )
    check_header_value(value, field=field)
    try:
        return _parse_address_cached(value)
    except InvalidNotification as exc:
        exc.field = field
        raise


def parse_address_list(value: str | Sequence[str], *, field: str) -> list[Address]:
    """Parse one comma-separated string or a list of strings into unique addresses.

    Items of a list are reported as ``field[i]``. Duplicates (by lower-cased ``addr_spec``) are
    dropped, keeping the first occurrence and its display name.
    """
    items: list[tuple[str, str]]
    if isinstance(value, str):
        check_header_value(value, field=field)
        parts = [part for part in _split_address_list(value) if part.strip()]
        if not parts:
            raise InvalidNotification("no email address given", field=field)
        items = [(part, field) for part in parts]
    elif isinstance(value, Sequence):
        items = [(item, f"{field}[{index}]") for index, item in enumerate(value)]
    else:
        raise InvalidNotification(
            f"expected an address or a list of addresses, not {type(value).__name__}",
            field=field,
        )
    seen: set[str] = set()
    result: list[Address] = []
    for raw, item_field in items:
        address = parse_address(raw, field=item_field)
        key = address.addr_spec.lower()
        if key not in seen:
            seen.add(key)
            result.append(address)
    return result


def check_custom_headers(headers: Mapping[str, str], *, field: str = "headers") -> dict[str, str]:
    """Validate caller-supplied headers and return them as a new dict.

    Names must be ``X-`` headers of RFC 5322 field-name characters (at most 76), each at most once
    (case-insensitively), and not a relay's control header (:data:`RELAY_CONTROL_HEADERS`);
    values must not contain CR, LF or NUL.
    """
    result: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str):
            raise InvalidNotification(f"header names must be strings, not {name!r}", field=field)
        item_field = f"{field}.{name}"
        if not _FIELD_NAME.fullmatch(name):
            # Checked before the value so a name with CR/LF is reported as an injection.
            check_header_value(name, field=item_field)
            raise InvalidNotification(
                f"custom header {name!r} must start with 'X-', be at most 76 characters long "
                "and contain only printable ASCII other than ':'",
                field=item_field,
            )
        if name.lower().startswith(RELAY_CONTROL_HEADERS):
            raise InvalidNotification(
                f"header {name!r} is an email provider's control header (it would instruct the "
                "relay, e.g. add hidden recipients) and is not accepted",
                field=item_field,
            )
        if name.lower() in seen:
            raise InvalidNotification(f"header {name!r} is given more than once", field=item_field)
        if not isinstance(value, str):
            raise InvalidNotification(
                f"header {name!r} must have a string value, not {type(value).__name__}",
                field=item_field,
            )
        seen.add(name.lower())
        result[name] = check_header_value(value, field=item_field)
    return result


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_address_cached(value: str) -> Address:
    # Exceptions are not cached by lru_cache, so raising here is safe; the caller sets ``field``.
    text = value.strip()
    if not text:
        raise InvalidNotification("email address is empty")
    display_name = ""
    addr = text
    if text.endswith(">"):
        start = text.rfind("<")
        if start < 0:
            raise InvalidNotification(f"unbalanced '>' in email address {value!r}")
        display_name = _parse_display_name(text[:start].strip(), value)
        addr = text[start + 1 : -1].strip()
    elif "<" in text:
        raise InvalidNotification(f"unbalanced '<' in email address {value!r}")
    if not addr:
        raise InvalidNotification(f"no email address inside the angle brackets of {value!r}")
    try:
        validated = validate_email(addr, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidNotification(f"invalid email address {addr!r}: {exc}") from exc
    return Address(addr_spec=validated.normalized, display_name=display_name)


def _parse_display_name(text: str, value: str) -> str:
    """Unquote a display name; unquoted names may hold any Unicode but quotes and brackets."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        chars: list[str] = []
        escaped = False
        for char in text[1:-1]:
            if escaped:
                chars.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                raise InvalidNotification(f"unescaped '\"' in the display name of {value!r}")
            else:
                chars.append(char)
        if escaped:
            raise InvalidNotification(f"display name of {value!r} ends with a lone backslash")
        name = "".join(chars)
    elif any(char in '"<>' for char in text):
        raise InvalidNotification(f"display name of {value!r} has unbalanced quotes or brackets")
    else:
        name = text
    if any(not char.isprintable() and char != "\t" for char in name):
        raise InvalidNotification(f"display name of {value!r} contains control characters")
    return " ".join(name.split())


def _split_address_list(value: str) -> list[str]:
    """Split on commas that are outside quoted strings and angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = escaped = False
    depth = 0
    for char in value:
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif not in_quotes and char == "<":
            depth += 1
        elif not in_quotes and char == ">":
            depth = max(depth - 1, 0)
        elif not in_quotes and depth == 0 and char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _ascii_domain(domain: str) -> str:
    # IDNA 2008 with UTS #46 mapping, the same rules email-validator applied when validating.
    return idna.encode(domain, uts46=True).decode("ascii")


def normalize_address(address: str) -> str:
    """``Local@Domain`` -> ``Local@domain``: SMTP ignores a domain's case, not a local part's.

    Raises ValueError for anything that is not a bare ``local@domain``.
    """
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if len(text) > 320 or not _BARE_ADDRESS.match(text) or any(ord(c) < 32 for c in text):
        raise ValueError(f"not an email address: {address!r}")
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"

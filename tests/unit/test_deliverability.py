"""Pure parts of issue 17: DKIM keys and signing, unsubscribe tokens, the header, the page."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from typing import Literal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from notifier.compose.addresses import parse_address
from notifier.compose.mime import build_email
from notifier.delivery.dkim import (
    DkimSigner,
    generate_key,
    load_signer,
    parse_private_key,
    verify_signatures,
)
from notifier.errors import ConfigurationError, InvalidNotification, InvalidUnsubscribeToken
from notifier.settings import load_settings
from notifier.startup import check_unsubscribe_config, load_renderer
from notifier.unsubscribe.page import category_label, page_text, render_page
from notifier.unsubscribe.tokens import make_token, read_token, unsubscribe_uris
from tests.support.worker import REPO

SECRET = "a-secret-key-of-at-least-32-characters"


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def message(**extra: object) -> bytes:
    email = build_email(
        notification_id="n-1",
        sender=parse_address("Notifier <notifier@example.com>", field="from"),
        to=[parse_address("ada@example.org", field="to")],
        subject="Hello",
        text="Body\nline two",
        **extra,  # type: ignore[arg-type]
    )
    return email.as_bytes()


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_sign_and_verify_each_algorithm(algorithm: Literal["rsa", "ed25519"]) -> None:
    key = parse_private_key(
        generate_key(algorithm), selector="s1", domain="example.com", setting="K"
    )
    signer = DkimSigner([key], headers=["From", "To", "Subject", "List-Unsubscribe"])
    signed = signer(message())
    assert signed.startswith(b"DKIM-Signature: v=1; a=" + key.algorithm.encode())
    assert verify_signatures(signed, signer.dns_records()) == [True]
    assert verify_signatures(signed.replace(b"Hello", b"Hellp"), signer.dns_records()) == [False]
    # Adding a signed header that was absent breaks it too (it was signed as absent).
    added = signed.replace(b"Subject:", b"List-Unsubscribe: <https://evil.example/>\r\nSubject:")
    assert verify_signatures(added, signer.dns_records()) == [False]


def test_ed25519_seed_in_base64_is_accepted() -> None:
    seed = base64.b64encode(bytes(range(32)))
    key = parse_private_key(seed, selector="e", domain="example.com", setting="K")
    assert key.algorithm == "ed25519-sha256" and key.dns_record.startswith("v=DKIM1; k=ed25519; p=")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"not a key", "neither a PEM"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a usable PEM"),
        (pem(ec.generate_private_key(ec.SECP256R1())), "cannot sign DKIM"),
    ],
    ids=["empty", "garbage", "broken-pem", "ec-key"],
)
def test_unusable_keys_name_the_setting(data: bytes, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_private_key(data, selector="s", domain="example.com", setting="DKIM_PRIVATE_KEY")
    assert str(info.value).startswith("DKIM_PRIVATE_KEY: ") and problem in str(info.value)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"dkim_domain": "example.com", "dkim_selector": "s"}, "DKIM_PRIVATE_KEY or"),
        ({"dkim_private_key": "x"}, "DKIM_DOMAIN and DKIM_SELECTOR"),
        (
            {
                "dkim_domain": "example.com",
                "dkim_selector": "s",
                "dkim_private_key": "x",
                "dkim_private_key_file": "/k.pem",
            },
            "exclusive",
        ),
        (
            {
                "dkim_domain": "example.com",
                "dkim_selector": "s",
                "dkim_private_key": generate_key("rsa").decode(),
                "dkim_secondary_selector": "e",
            },
            "go together",
        ),
    ],
)
def test_incomplete_dkim_settings_are_refused(settings: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        load_signer(load_settings(**settings))


def test_no_dkim_settings_means_no_signer() -> None:
    assert load_signer(load_settings()) is None


def test_keygen_prints_a_key_and_a_record_that_verify() -> None:
    output = subprocess.run(
        [sys.executable, "-m", "notifier.cli", "dkim", "keygen", "--selector", "s9",
         "--domain", "example.net"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    private = re.search(r"-----BEGIN PRIVATE KEY-----.*?-----END PRIVATE KEY-----", output, re.S)
    assert private is not None
    zone = re.search(r"^s9\._domainkey\.example\.net\. IN TXT \( (.*) \)$", output, re.M)
    assert zone is not None
    strings = re.findall(r'"([^"]*)"', zone.group(1))
    assert len(strings) >= 2 and all(len(s) <= 255 for s in strings)
    record = "".join(strings)
    assert record in output.splitlines()  # the one-line form, for web forms
    key = parse_private_key(
        private.group().encode(), selector="s9", domain="example.net", setting="K"
    )
    signed = DkimSigner([key], headers=["From"])(message())
    assert verify_signatures(signed, {"s9._domainkey.example.net": record}) == [True]


def test_list_unsubscribe_headers() -> None:
    data = message(list_unsubscribe=("https://n.example.com/u/abc", "mailto:u@b.example.com"))
    assert (
        b"List-Unsubscribe: <https://n.example.com/u/abc>,\r\n <mailto:u@b.example.com>" in (data)
        or b"List-Unsubscribe: <https://n.example.com/u/abc>, <mailto:u@b.example.com>" in data
    )
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
    assert b"List-Unsubscribe" not in message()
    # mailto only: no one-click POST is possible.
    assert b"List-Unsubscribe-Post" not in message(list_unsubscribe=("mailto:u@b.example.com",))
    for bad in ("https://x.example/a b", "https://x.example/>", "https://x.example/\r\nBcc: x"):
        with pytest.raises(InvalidNotification):
            message(list_unsubscribe=(bad,))


def test_tokens_round_trip_rotate_and_refuse_forgeries() -> None:
    old = load_settings(secret_key=SECRET)
    token = make_token(old, recipient="Ada@Example.org", category="digest", locale="ru")
    found = read_token(old, token)
    assert (found.recipient, found.category, found.locale) == ("Ada@Example.org", "digest", "ru")
    rotated = load_settings(secret_key="b" * 40, secret_key_previous=SECRET)
    assert read_token(rotated, token) == found
    assert read_token(rotated, make_token(rotated, recipient="a@b.c", category="d", locale="en"))
    after_grace = load_settings(secret_key="b" * 40)
    head, _, signature = token.rpartition(".")
    flipped = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    for bad in (flipped, "x", ""):
        with pytest.raises(InvalidUnsubscribeToken):
            read_token(old, bad)
    with pytest.raises(InvalidUnsubscribeToken) as info:
        read_token(after_grace, token)
    assert not info.value.expired


def test_unsubscribe_url_uses_public_url() -> None:
    settings = load_settings(secret_key=SECRET, public_url="https://n.example.com/")
    (uri,) = unsubscribe_uris(settings, recipient="a@b.c", category="digest", locale="en")
    assert uri.startswith("https://n.example.com/u/") and "//u" not in uri


def test_production_public_url_must_be_https() -> None:
    with pytest.raises(ConfigurationError, match="PUBLIC_URL must be https"):
        load_settings(
            notifier_env="production",
            public_url="http://n.example.com",
            mail_from="ops@example.com",
            api_keys=["k" * 40],
        )


def test_page_is_localized_and_escaped() -> None:
    assert page_text("ru-RU")[0] == "ru" and page_text("de")[0] == "en"
    assert category_label("product_updates") == "Product updates"
    html = render_page(
        locale="ru",
        address="<ada>@example.org",
        action="/u/t/preferences",
        csrf="c",
        categories={"digest": False},
        unsubscribed_all=False,
    )
    assert '<html lang="ru">' in html and "&lt;ada&gt;@example.org" in html
    assert '<input type="checkbox" id="c-1" name="subscribed"\n value="digest">' in html
    assert "<script" not in html


def test_production_without_secret_key_accepts_no_token() -> None:
    development = load_settings()
    token = make_token(development, recipient="a@b.c", category="digest", locale="en")
    assert read_token(development, token).recipient == "a@b.c"
    production = load_settings(
        notifier_env="production", mail_from="ops@example.com", api_keys=["k" * 40]
    )
    with pytest.raises(InvalidUnsubscribeToken, match="SECRET_KEY"):
        read_token(production, token)


def test_worker_start_up_needs_public_url_and_secret_key_in_production() -> None:
    base = {
        "notifier_env": "production",
        "mail_from": "ops@example.com",
        "api_keys": ["k" * 40],
        "templates_dir": REPO / "templates",
    }
    with pytest.raises(ConfigurationError, match="PUBLIC_URL must be set"):
        check_unsubscribe_config(load_settings(**base), load_renderer(load_settings(**base)))
    with_url = load_settings(**base, public_url="https://n.example.com")
    with pytest.raises(ConfigurationError, match="SECRET_KEY must be set"):
        check_unsubscribe_config(with_url, load_renderer(with_url))
    ready = load_settings(**base, public_url="https://n.example.com", secret_key="s" * 40)
    check_unsubscribe_config(ready, load_renderer(ready))

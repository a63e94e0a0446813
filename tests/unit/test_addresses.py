"""Unit tests for address parsing, normalization, IDN envelopes and header checks."""

# Russian text is the point of these tests, so Cyrillic look-alike letters are intended.
# ruff: noqa: RUF001

from __future__ import annotations

import pytest

from notifier.compose.addresses import (
    Address,
    check_custom_headers,
    check_header_value,
    parse_address,
    parse_address_list,
)
from notifier.errors import HeaderInjection, InvalidNotification


def test_plain_address() -> None:
    address = parse_address("user@example.com", field="to")
    assert address == Address("user@example.com")
    assert str(address) == "user@example.com"
    assert address.envelope == "user@example.com"


def test_domain_is_normalized_to_lower_case() -> None:
    assert parse_address("User@Example.COM", field="to").addr_spec == "User@example.com"


def test_name_and_angle_address() -> None:
    address = parse_address("  Jane Doe   <jane@example.com> ", field="to")
    assert address == Address("jane@example.com", "Jane Doe")
    assert str(address) == "Jane Doe <jane@example.com>"


def test_quoted_name_with_specials_and_escapes() -> None:
    address = parse_address(r'"Doe, \"JD\" Jane" <jane@example.com>', field="to")
    assert address.display_name == 'Doe, "JD" Jane'
    # str() quotes it again, so the result parses back to the same address.
    assert parse_address(str(address), field="to") == address


def test_cyrillic_display_name() -> None:
    address = parse_address("Иван Петров <ivan@example.com>", field="to")
    assert address.display_name == "Иван Петров"
    assert str(address) == "Иван Петров <ivan@example.com>"


def test_angle_address_without_name() -> None:
    assert parse_address("<a@example.com>", field="to") == Address("a@example.com")


def test_idn_domain_is_accepted_and_envelope_is_ascii() -> None:
    address = parse_address("Почта <user@пример.рф>", field="to")
    assert address.addr_spec == "user@пример.рф"
    assert address.envelope == "user@xn--e1afmkfd.xn--p1ai"
    assert address.envelope.isascii()


def test_punycode_input_normalizes_to_unicode() -> None:
    address = parse_address("user@xn--e1afmkfd.xn--p1ai", field="to")
    assert address.addr_spec == "user@пример.рф"
    assert address.envelope == "user@xn--e1afmkfd.xn--p1ai"


def test_non_ascii_local_part_keeps_unicode_envelope() -> None:
    address = parse_address("почта@пример.рф", field="to")
    assert address.envelope == "почта@пример.рф"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("foo", "@-sign"),
        ("a@", "after the @-sign"),
        ("a@b@c", "'@'"),
        ("Name <foo>", "@-sign"),
        ("a@localhost", "period"),
        ("Name <>", "angle brackets"),
        ("Name <a@example.com", "'<'"),
        ('"Name <a@example.com>', "quotes"),
    ],
)
def test_invalid_addresses_name_the_field(value: str, fragment: str) -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        parse_address(value, field="to[3]")
    assert excinfo.value.field == "to[3]"
    assert not isinstance(excinfo.value, HeaderInjection)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_address_is_rejected(value: str) -> None:
    with pytest.raises(InvalidNotification, match="empty") as excinfo:
        parse_address(value, field="from")
    assert excinfo.value.field == "from"


def test_invalid_address_is_rejected_every_time() -> None:
    # Parsing is cached; a failure must not be cached into a success or lose its field.
    for field in ("to[0]", "cc[1]"):
        with pytest.raises(InvalidNotification) as excinfo:
            parse_address("not-an-address", field=field)
        assert excinfo.value.field == field


def test_non_string_address_is_rejected() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        parse_address(42, field="to")  # type: ignore[arg-type]
    assert excinfo.value.field == "to"


@pytest.mark.parametrize(
    "value",
    [
        "a@example.com\r\nBcc: victim@example.com",
        "a@example.com\nX: y",
        "Evil\r\nBcc: victim@example.com <a@example.com>",
        "a@example.com\x00",
    ],
)
def test_line_breaks_in_addresses_are_header_injection(value: str) -> None:
    with pytest.raises(HeaderInjection) as excinfo:
        parse_address(value, field="from")
    assert excinfo.value.field == "from"


def test_control_characters_in_display_name_are_rejected() -> None:
    with pytest.raises(InvalidNotification, match="control"):
        parse_address("Bell\x07 <a@example.com>", field="to")


def test_address_list_from_list_dedups_case_insensitively() -> None:
    addresses = parse_address_list(
        ["First <A@example.com>", "b@example.com", "Second <a@EXAMPLE.com>", "a@example.com"],
        field="to",
    )
    assert addresses == [Address("A@example.com", "First"), Address("b@example.com")]


def test_address_list_from_comma_separated_string() -> None:
    addresses = parse_address_list('"Doe, Jane" <jane@example.com>, bob@example.com,', field="cc")
    assert addresses == [Address("jane@example.com", "Doe, Jane"), Address("bob@example.com")]


def test_address_list_names_the_failing_item() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        parse_address_list(["ok@example.com", "also@example.com", "broken"], field="to")
    assert excinfo.value.field == "to[2]"


def test_address_list_injection_names_the_item() -> None:
    with pytest.raises(HeaderInjection) as excinfo:
        parse_address_list(["ok@example.com", "x@example.com\r\nBcc: y@example.com"], field="to")
    assert excinfo.value.field == "to[1]"


def test_empty_address_list_string_is_rejected() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        parse_address_list(" , ", field="to")
    assert excinfo.value.field == "to"


def test_empty_address_list_sequence_is_empty() -> None:
    assert parse_address_list([], field="cc") == []


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nb", "a\x00b"])
def test_check_header_value_rejects_line_breaks(value: str) -> None:
    with pytest.raises(HeaderInjection) as excinfo:
        check_header_value(value, field="subject")
    assert excinfo.value.field == "subject"


def test_check_header_value_returns_value() -> None:
    assert check_header_value("Привет\tмир", field="subject") == "Привет\tмир"


def test_custom_headers_are_copied() -> None:
    headers = {"X-Campaign": "весна", "x-trace-id": "abc"}
    checked = check_custom_headers(headers)
    assert checked == headers
    assert checked is not headers


@pytest.mark.parametrize(
    "name",
    ["Reply-To", "Bcc", "Campaign", "X-", "X-Bad Name", "X-Bad:Name", "X-Тест", "X-" + "a" * 80],
)
def test_custom_header_names_are_checked(name: str) -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        check_custom_headers({name: "value"})
    assert excinfo.value.field == f"headers.{name}"
    assert not isinstance(excinfo.value, HeaderInjection)


def test_custom_header_value_injection() -> None:
    with pytest.raises(HeaderInjection) as excinfo:
        check_custom_headers({"X-Foo": "bar\r\nBcc: victim@example.com"}, field="meta")
    assert excinfo.value.field == "meta.X-Foo"


def test_custom_header_name_injection() -> None:
    with pytest.raises(HeaderInjection):
        check_custom_headers({"X-Foo\r\nBcc": "x"})


def test_custom_header_given_twice_is_rejected() -> None:
    with pytest.raises(InvalidNotification, match="more than once"):
        check_custom_headers({"X-Foo": "1", "x-foo": "2"})


def test_custom_header_value_must_be_a_string() -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        check_custom_headers({"X-Count": 3})  # type: ignore[dict-item]
    assert excinfo.value.field == "headers.X-Count"

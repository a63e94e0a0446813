"""Keyset cursors (notifier.storage.paging): what format_cursor makes, parse_cursor reads back."""

from __future__ import annotations

import pytest

from notifier.storage.paging import format_cursor, parse_cursor


def test_a_cursor_round_trips() -> None:
    cursor = format_cursor(1764531000.123456, "ntf_01:x")
    assert parse_cursor(cursor) == ("1764531000.123456", 1764531000.123456, "ntf_01:x")


@pytest.mark.parametrize("text", ["", "abc:ntf", "12.5", "12.5:", ":ntf"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cursor(text)

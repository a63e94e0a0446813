"""Keyset cursors for newest-first pages over a sorted set: ``SCORE:MEMBER``, the last item
returned, which the next page resumes strictly after."""

from __future__ import annotations

__all__ = ["format_cursor", "parse_cursor"]


def format_cursor(score: float, member: str) -> str:
    return f"{score!r}:{member}"


def parse_cursor(cursor: str) -> tuple[str, float, str]:
    """The score as given (a ZRANGE bound), as a number, and the member; ValueError when
    ``cursor`` is not one :func:`format_cursor` made."""
    score_text, sep, member = cursor.partition(":")
    score = float(score_text)  # ValueError for a score that is not a number
    if not sep or not member:
        raise ValueError(f"not a cursor: {cursor!r}")
    return score_text, score, member

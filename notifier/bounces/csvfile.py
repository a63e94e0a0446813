"""The suppression list as CSV: what export writes and import reads (API and CLI alike)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime

from notifier.bounces.events import normalize_address
from notifier.errors import InvalidSuppressionCsv
from notifier.storage.suppressions import REASONS, SuppressionEntry, check_category

__all__ = ["CSV_COLUMNS", "InvalidSuppressionCsv", "csv_line", "entry_row", "parse_csv"]

CSV_COLUMNS = ("address", "reason", "category", "source", "created", "expires", "note")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> float:
    """An ISO 8601 time (a bare date is midnight UTC) as a Unix timestamp; ValueError if not."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def entry_row(entry: SuppressionEntry) -> tuple[str, ...]:
    values = {
        "address": entry.address,
        "reason": entry.reason,
        "category": entry.category or "",
        "source": entry.source,
        "created": iso(entry.created) or "",
        "expires": iso(entry.expires) or "",
        "note": entry.note,
    }
    return tuple(values[column] for column in CSV_COLUMNS)


def csv_line(values: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(list(values))
    return buffer.getvalue()


def parse_csv(text: str, *, source: str, now: float) -> list[SuppressionEntry]:
    """Entries from CSV whose header names at least ``address`` (reason defaults to manual).

    Raises InvalidSuppressionCsv listing every bad row, so an import is all or nothing.
    """
    reader = csv.DictReader(io.StringIO(text))
    columns = [name.strip().lower() for name in reader.fieldnames or []]
    if "address" not in columns:
        raise InvalidSuppressionCsv(
            "the CSV needs a header row with an 'address' column",
            errors=[{"field": "header", "message": "no 'address' column"}],
        )
    reader.fieldnames = columns
    entries: list[SuppressionEntry] = []
    errors: list[dict[str, str]] = []
    for number, row in enumerate(reader, start=1):
        try:
            reason = (row.get("reason") or "manual").strip()
            if reason not in REASONS:
                raise ValueError(f"reason must be one of {', '.join(REASONS)}")
            expires_text = (row.get("expires") or "").strip()
            entries.append(
                SuppressionEntry(
                    address=normalize_address(row.get("address") or ""),
                    category=check_category((row.get("category") or "").strip() or None),
                    reason=reason,
                    source=(row.get("source") or "").strip() or source,
                    created=now,
                    expires=parse_time(expires_text) if expires_text else None,
                    note=(row.get("note") or "").strip()[:1000],
                )
            )
        except ValueError as exc:
            errors.append({"field": f"row[{number}]", "message": str(exc)})
    if errors:
        raise InvalidSuppressionCsv(
            f"{len(errors)} of the CSV's rows are invalid; nothing was imported", errors=errors
        )
    return entries

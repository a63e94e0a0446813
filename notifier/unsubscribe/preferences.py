"""A recipient's preferences, kept as suppression entries with reason ``unsubscribe``.

Leaving a category is an entry for address + category; leaving everything is one entry for the
address alone, which stops every unsubscribable category (present and future) but never
transactional mail. Entries with another reason (a hard bounce, a complaint, an operator's)
are never removed from here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from notifier.compose.addresses import normalize_address
from notifier.storage.suppressions import SuppressionEntry, SuppressionStore, entry_id

__all__ = ["UNSUBSCRIBE", "Preferences", "read_preferences", "unsubscribe", "update_preferences"]

UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, slots=True)
class Preferences:
    """Per category: True when the recipient receives it (and ``unsubscribed_all`` is false)."""

    address: str
    categories: Mapping[str, bool]
    unsubscribed_all: bool
    #: The reason of an address-wide entry other than an unsubscribe (a hard bounce, a
    #: complaint): then no mail at all goes to the address, whatever the preferences say.
    blocked_by: str | None = None


async def read_preferences(
    suppressions: SuppressionStore, address: str, categories: Sequence[str]
) -> Preferences:
    """The preferences of ``address`` over ``categories``; raises ValueError for a bad address."""
    address = normalize_address(address)
    ids = [entry_id(address), *(entry_id(address, category) for category in categories)]
    whole, *per_category = await suppressions.get_many(ids)
    return Preferences(
        address=address,
        categories={
            category: entry is None
            for category, entry in zip(categories, per_category, strict=True)
        },
        unsubscribed_all=whole is not None and whole.reason == UNSUBSCRIBE,
        blocked_by=whole.reason if whole is not None and whole.reason != UNSUBSCRIBE else None,
    )


async def update_preferences(
    suppressions: SuppressionStore,
    address: str,
    *,
    categories: Mapping[str, bool],
    unsubscribed_all: bool | None = None,
    source: str,
    known: Sequence[str],
) -> Preferences:
    """Apply changes and return the result; repeating a change changes nothing.

    ``categories`` maps a category to whether the recipient wants it; ``known`` are the
    categories the templates declare (the result lists those).
    """
    address = normalize_address(address)
    now = time.time()
    changes: list[tuple[str | None, bool]] = list(categories.items())
    if unsubscribed_all is not None:
        changes.append((None, not unsubscribed_all))
    current = await suppressions.get_many([entry_id(address, category) for category, _ in changes])
    to_add: list[SuppressionEntry] = []
    for (category, wanted), entry in zip(changes, current, strict=True):
        if not wanted and entry is None:
            to_add.append(
                SuppressionEntry(
                    address=address,
                    reason=UNSUBSCRIBE,
                    source=source,
                    created=now,
                    category=category,
                    note="the recipient unsubscribed",
                )
            )
        elif wanted and entry is not None and entry.reason == UNSUBSCRIBE:
            await suppressions.remove(address, category)
    if to_add:
        await suppressions.put_many(to_add)
    return await read_preferences(suppressions, address, known)


async def unsubscribe(
    suppressions: SuppressionStore, address: str, category: str, *, source: str
) -> bool:
    """Record that ``address`` leaves ``category``; returns False when it already had."""
    address = normalize_address(address)
    if await suppressions.get(address, category) is not None:
        return False
    entry = SuppressionEntry(
        address=address,
        reason=UNSUBSCRIBE,
        source=source,
        created=time.time(),
        category=category,
        note="one-click unsubscribe (RFC 8058)",
    )
    return await suppressions.put(entry)

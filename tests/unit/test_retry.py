"""Backoff: exponential ceiling, full jitter, capped."""

from __future__ import annotations

import random

import pytest

from notifier.delivery.backoff import backoff_delay


def test_delays_stay_under_the_exponential_ceiling_and_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(1, 30):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, base=2.0, cap=60.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < ceiling * 0.2 and max(delays) > ceiling * 0.8


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, base=1, cap=10)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10_000, base=1, cap=5, rng=random.Random(1)) <= 5

"""SPEC L3's lazy refills: when a refill is due, computed from the clock alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keystile.core.credits import last_refill_moment, next_refill_moment, refill_due
from keystile.core.models import Refill


def ms(year: int, month: int, day: int, *time: int) -> int:
    hour, minute, second = (*time, 0, 0, 0)[:3]
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def test_a_daily_refill_happens_at_midnight_utc() -> None:
    assert last_refill_moment(Refill(10, "daily"), ms(2027, 3, 5, 17, 30)) == ms(2027, 3, 5)
    assert last_refill_moment(Refill(10, "daily"), ms(2027, 3, 5)) == ms(2027, 3, 5)


@pytest.mark.parametrize(
    ("day", "now", "moment"),
    [
        (15, (2027, 3, 20, 8), (2027, 3, 15)),
        (15, (2027, 3, 10, 8), (2027, 2, 15)),
        (15, (2027, 3, 15), (2027, 3, 15)),
        (31, (2027, 3, 1), (2027, 2, 28)),  # clamped to the month's last day
        (31, (2028, 3, 1), (2028, 2, 29)),  # a leap year
        (31, (2027, 1, 30), (2026, 12, 31)),  # across a year
        (1, (2027, 1, 1, 0, 0, 1), (2027, 1, 1)),
        (None, (2027, 6, 9), (2027, 6, 1)),  # no day: the first of the month
    ],
)
def test_a_monthly_refill_happens_on_its_day_clamped_to_the_month(
    day: int | None, now: tuple[int, ...], moment: tuple[int, ...]
) -> None:
    assert last_refill_moment(Refill(10, "monthly", day), ms(*now)) == ms(*moment)


def test_a_refill_is_due_once_per_moment() -> None:
    refill = Refill(100, "daily")
    now = ms(2027, 3, 5, 12)
    assert refill_due(refill, ms(2027, 3, 4, 23), now) == ms(2027, 3, 5)
    assert refill_due(refill, ms(2027, 3, 5, 0, 0, 1), now) is None, "already filled since midnight"
    assert refill_due(refill, None, now) == ms(2027, 3, 5)
    assert refill_due(None, None, now) is None


@pytest.mark.parametrize(
    ("refill", "now", "moment"),
    [
        (Refill(10, "daily"), (2027, 3, 5, 17, 30), (2027, 3, 6)),
        (Refill(10, "daily"), (2027, 12, 31, 23), (2028, 1, 1)),
        (Refill(10, "monthly", 15), (2027, 3, 20), (2027, 4, 15)),
        (Refill(10, "monthly", 15), (2027, 3, 10), (2027, 3, 15)),
        (Refill(10, "monthly", 31), (2027, 3, 1), (2027, 3, 31)),
        (Refill(10, "monthly", 31), (2027, 1, 31, 1), (2027, 2, 28)),  # clamped
        (Refill(10, "monthly", 1), (2027, 12, 2), (2028, 1, 1)),
    ],
)
def test_the_next_refill_is_the_first_moment_after_now(
    refill: Refill, now: tuple[int, ...], moment: tuple[int, ...]
) -> None:
    assert next_refill_moment(refill, ms(*now)) == ms(*moment)


@pytest.mark.parametrize(
    ("refill", "now", "moment"),
    [
        (Refill(10, "daily"), ms(2027, 3, 5, 17, 30), ms(2027, 3, 6)),
        (Refill(10, "daily"), ms(2027, 3, 5), ms(2027, 3, 6)),  # a refill that just happened is not the next
        (Refill(10, "monthly", 2), ms(2027, 1, 1, 12), ms(2027, 1, 2)),
        (Refill(10, "monthly", 1), ms(2027, 1, 5), ms(2027, 2, 1)),
        (Refill(10, "monthly", 31), ms(2027, 1, 31, 1), ms(2027, 2, 28)),  # clamped to the month's last day
        (Refill(10, "monthly", 15), ms(2027, 12, 20), ms(2028, 1, 15)),
    ],
)
def test_the_next_refill_after_a_refill_is_a_whole_interval_later(refill: Refill, now: int, moment: int) -> None:
    """What forward auth's Retry-After is for exhausted credits (SPEC V5)."""
    assert next_refill_moment(refill, now) == moment

"""Credits (SPEC L3): lazy daily or monthly refills, computed from the clock so that no cron job is needed.

A balance with a refill is topped up to ``amount`` at the first verification after each refill moment:
midnight UTC for daily refills, or midnight UTC on ``day`` of each month (clamped to the month's last day) for
monthly ones. ``refilled_at`` records the last fill (creation counts as one), and a fill is due when a refill
moment has passed since then.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from keystile.core.models import Refill

_DAY_MS = 86_400_000


def last_refill_moment(refill: Refill, now_ms: int) -> int:
    """The latest refill moment at or before ``now_ms`` (epoch ms)."""
    if refill.interval == "daily":
        return now_ms - now_ms % _DAY_MS
    day = refill.day or 1
    moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    year, month = moment.year, moment.month
    candidate = _monthly(year, month, day)
    if candidate > now_ms:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        candidate = _monthly(year, month, day)
    return candidate


def next_refill_moment(refill: Refill, now_ms: int) -> int:
    """The first refill moment after ``now_ms`` (epoch ms)."""
    for days in range(1, 33):
        moment = last_refill_moment(refill, now_ms + days * _DAY_MS)
        if moment > now_ms:
            return moment
    raise AssertionError("a refill comes at least monthly")  # pragma: no cover


def _monthly(year: int, month: int, day: int) -> int:
    clamped = min(day, calendar.monthrange(year, month)[1])
    return int(datetime(year, month, clamped, tzinfo=UTC).timestamp() * 1000)


def refill_due(refill: Refill | None, refilled_at: int | None, now_ms: int) -> int | None:
    """The refill moment to apply now, or ``None`` when no refill is due."""
    if refill is None:
        return None
    moment = last_refill_moment(refill, now_ms)
    if refilled_at is not None and refilled_at >= moment:
        return None
    return moment

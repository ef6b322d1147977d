"""RFC 3339 UTC strings at the edges, integer milliseconds everywhere inside.

The times Keystile accepts and answers are those RFC 3339 can write in UTC with a four-digit year:
``0001-01-01T00:00:00.000Z`` (:data:`MIN_MS`) to ``9999-12-31T23:59:59.999Z`` (:data:`MAX_MS`). A time given with
an offset counts by its UTC instant, so ``9999-12-31T23:59:59-01:00`` (year 10000 in UTC) is refused like a
malformed time: every accepted time can be written back, and nothing that was stored fails to format later.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MIN_MS = -62_135_596_800_000
"""``0001-01-01T00:00:00.000Z``, the first instant that can be written."""
MAX_MS = 253_402_300_799_999
"""``9999-12-31T23:59:59.999Z``, the last instant that can be written."""
RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z (UTC)"
# RFC 3339 section 5.6 with ASCII digits only, and "+hhmm" as msgspec (which decodes bodies) takes it too.
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)", re.ASCII
)


def to_rfc3339(ms: int | None) -> str | None:
    """``1800000000123`` -> ``"2027-01-15T08:00:00.123Z"``; ``None`` stays ``None``.

    Raises ``ValueError`` for a time outside :data:`MIN_MS` .. :data:`MAX_MS`.
    """
    if ms is None:
        return None
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"{ms} ms since the epoch is outside the times that can be written, {RANGE}")
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}{millis:03d}Z"


@lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    # Cached: verify answers carry this second's reset times again and again. Fields, not strftime: its %Y does
    # not pad years before 1000 on Linux.
    t = _EPOCH + timedelta(seconds=seconds)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}."


def from_datetime(moment: datetime) -> int:
    """An aware datetime (as msgspec decodes an RFC 3339 time) in integer milliseconds since the epoch.

    Exact: ``int(moment.timestamp() * 1000)`` goes through a float, which after 2038-01-19 cannot hold every
    millisecond. Raises ``ValueError`` for a naive datetime and for an instant outside :data:`MIN_MS` ..
    :data:`MAX_MS` (``datetime.max`` with a negative offset is in year 10000).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the time needs an offset, such as Z")
    ms = (moment - _EPOCH) // _MS
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"the time must lie within {RANGE}")
    return ms


def to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (:func:`from_datetime` turns it back into the same number)."""
    return _EPOCH + ms * _MS


def from_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp with an offset (``Z`` or ``+hh:mm``) into milliseconds (finer fractions are
    dropped).

    Raises ``ValueError`` for anything else: a time without an offset (it would be ambiguous), another ISO 8601
    form, digits other than ASCII ones, a date or time that does not exist, or an instant outside
    :data:`MIN_MS` .. :data:`MAX_MS`.
    """
    if _DATE_TIME.fullmatch(text) is None:
        if "T" not in text.upper():
            raise ValueError("expected a date and a time, such as 2030-01-01T00:00:00Z")
        if _DATE_TIME.fullmatch(text + "Z") is not None:
            raise ValueError("the time needs an offset, such as Z")
        raise ValueError("expected an RFC 3339 time, such as 2030-01-01T00:00:00Z")
    # The grammar is checked; fromisoformat checks the fields (month 13, February 30, a leap second, an offset
    # of 24 hours) and raises ValueError. It does not take a lower-case "z".
    return from_datetime(datetime.fromisoformat(text.upper()))

"""RFC 3339 UTC strings at the edges, integer milliseconds everywhere inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_rfc3339(ms: int | None) -> str | None:
    """``1800000000123`` -> ``"2027-01-15T08:00:00.123Z"``; ``None`` stays ``None``."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}{millis:03d}Z"


@lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    # strftime costs several times the rest; verify answers carry this second's reset times again and again.
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.")


def from_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp with an offset (``Z`` or ``+hh:mm``) into milliseconds.

    Raises ``ValueError`` for anything else, including a time without an offset (it would be ambiguous).
    """
    # RFC 3339 allows a lower-case "t" and "z"; fromisoformat takes the "t" but not the "z".
    text = text.upper()
    if "T" not in text:
        raise ValueError("expected a date and a time, such as 2030-01-01T00:00:00Z")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("the time needs an offset, such as Z")
    return (moment - _EPOCH) // _MS

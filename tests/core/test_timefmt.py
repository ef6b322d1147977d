"""RFC 3339 UTC strings at the edges, integer milliseconds inside."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystile.core.timefmt import from_rfc3339, to_rfc3339

# 0001-01-01 .. 9999-12-31T23:59:59.999Z: the years four digits can write
FIRST_MS = -62_135_596_800_000
LAST_MS = 253_402_300_799_999


def test_known_value() -> None:
    assert to_rfc3339(1_800_000_000_123) == "2027-01-15T08:00:00.123Z"
    assert from_rfc3339("2027-01-15T08:00:00.123Z") == 1_800_000_000_123


def test_the_epoch_and_times_before_it() -> None:
    assert to_rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert to_rfc3339(-1) == "1969-12-31T23:59:59.999Z"
    assert from_rfc3339("1969-12-31T23:59:59.999Z") == -1


def test_none_stays_none() -> None:
    assert to_rfc3339(None) is None


@given(st.integers(min_value=0, max_value=LAST_MS))
def test_milliseconds_round_trip(ms: int) -> None:
    text = to_rfc3339(ms)
    assert text is not None
    assert text.endswith("Z")
    assert from_rfc3339(text) == ms


@given(st.integers(min_value=0, max_value=LAST_MS), st.integers(min_value=0, max_value=LAST_MS))
def test_strings_sort_like_the_times_they_write(a: int, b: int) -> None:
    assert (to_rfc3339(a) < to_rfc3339(b)) == (a < b)  # type: ignore[operator]


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00z",  # RFC 3339 5.6: "T" and "Z" may be lower case
        "2030-01-01t00:00:00z",
        "2030-01-01T00:00:00+00:00",
        "2030-01-01T01:00:00+01:00",
        "2030-01-01T05:30:00.000+05:30",
        "2029-12-31T23:00:00-01:00",
        "2029-12-31T14:00:00-10:00",
    ],
)
def test_offsets_are_applied(text: str) -> None:
    assert from_rfc3339(text) == 1_893_456_000_000  # 2030-01-01T00:00:00Z


def test_fractions_below_a_millisecond_are_dropped() -> None:
    assert from_rfc3339("2030-01-01T00:00:00.000999Z") == 1_893_456_000_000


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-01T00:00:00",  # naive: which zone?
        "2030-01-01T00:00:00.123",
        "2030-01-01",
        "2030-01-01 00:00:00Z",
        "",
        "tomorrow",
        "2030-13-01T00:00:00Z",
        "2030-01-01T25:00:00Z",
        "2030-01-01T00:00:00+25:00",
        "1800000000000",
    ],
)
def test_naive_or_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the mistake
        from_rfc3339(text)


def test_a_naive_time_is_refused_with_a_hint_about_the_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        from_rfc3339("2030-01-01T00:00:00")

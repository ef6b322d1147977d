"""RFC 3339 UTC strings at the edges, integer milliseconds inside."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from keystile.core.timefmt import MAX_MS, MIN_MS, RANGE, from_datetime, from_rfc3339, to_rfc3339

# 0001-01-01 .. 9999-12-31T23:59:59.999Z: the years four digits can write
FIRST_MS = -62_135_596_800_000
LAST_MS = 253_402_300_799_999
WRITTEN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", re.ASCII)
NAIVE_EPOCH = datetime(1970, 1, 1)  # instants computed without any zone, as a check
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)  # minutes, as RFC 3339 can write them


def test_known_value() -> None:
    assert to_rfc3339(1_800_000_000_123) == "2027-01-15T08:00:00.123Z"
    assert from_rfc3339("2027-01-15T08:00:00.123Z") == 1_800_000_000_123


def test_the_epoch_and_times_before_it() -> None:
    assert to_rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert to_rfc3339(-1) == "1969-12-31T23:59:59.999Z"
    assert from_rfc3339("1969-12-31T23:59:59.999Z") == -1


def test_none_stays_none() -> None:
    assert to_rfc3339(None) is None


def test_the_range_is_what_four_digit_years_write() -> None:
    assert (MIN_MS, MAX_MS) == (FIRST_MS, LAST_MS)
    assert to_rfc3339(MIN_MS) == "0001-01-01T00:00:00.000Z"
    assert to_rfc3339(MAX_MS) == "9999-12-31T23:59:59.999Z"
    assert from_datetime(datetime.min.replace(tzinfo=UTC)) == MIN_MS
    assert from_datetime(datetime.max.replace(tzinfo=UTC)) == MAX_MS  # its microseconds are dropped


@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS))
@example(FIRST_MS)
@example(LAST_MS)
@example(-1)
def test_milliseconds_round_trip(ms: int) -> None:
    text = to_rfc3339(ms)
    assert text is not None
    assert WRITTEN.fullmatch(text), text  # four-digit year, milliseconds, Z
    assert from_rfc3339(text) == ms


@given(st.one_of(st.integers(max_value=FIRST_MS - 1), st.integers(min_value=LAST_MS + 1)))
@example(FIRST_MS - 1)
@example(LAST_MS + 1)
def test_milliseconds_outside_the_range_are_refused_with_a_value_error(ms: int) -> None:
    with pytest.raises(ValueError, match="0001-01-01") as raised:
        to_rfc3339(ms)
    assert not isinstance(raised.value, OverflowError)


def _written(moment: datetime, offset_minutes: int, digits: str) -> str:
    """``moment`` (naive, local to the offset) as RFC 3339 text with that offset and fraction digits."""
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    zone = "Z" if offset_minutes == 0 and not digits else f"{sign}{hours:02d}:{minutes:02d}"
    fraction = f".{digits}" if digits else ""
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}{fraction}{zone}"


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    OFFSETS,
    st.text(alphabet="0123456789", max_size=9),
)
@example(datetime(9999, 12, 31, 23, 59, 59), -60, "")  # finding 2: year 10000 in UTC
@example(datetime(1, 1, 1), 60, "")  # year 0 in UTC
@example(datetime(9999, 12, 31, 23, 59, 59), 0, "999999999")
@example(datetime(1, 1, 1), -(23 * 60 + 59), "")
@example(datetime(9999, 12, 31, 23, 59, 59), 23 * 60 + 59, "")
def test_every_time_with_any_offset_is_its_exact_instant_or_refused_for_its_range(
    local: datetime, offset_minutes: int, digits: str
) -> None:
    text = _written(local.replace(microsecond=0), offset_minutes, digits)
    millis = int(digits[:3].ljust(3, "0")) if digits else 0
    # The instant by integer arithmetic alone: no datetime in UTC, which may not exist for these.
    expected = (local.replace(microsecond=0) - NAIVE_EPOCH) // timedelta(milliseconds=1) + millis
    expected -= offset_minutes * 60_000
    if FIRST_MS <= expected <= LAST_MS:
        assert from_rfc3339(text) == expected
        assert from_rfc3339(to_rfc3339(expected)) == expected  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match=re.escape(RANGE)):
            from_rfc3339(text)


@given(st.datetimes(), OFFSETS)
@example(datetime.max, -1)
@example(datetime.min, 1)
def test_aware_datetimes_give_their_instant_or_a_value_error(local: datetime, offset_minutes: int) -> None:
    moment = local.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected = (local - NAIVE_EPOCH) // timedelta(milliseconds=1) - offset_minutes * 60_000
    if FIRST_MS <= expected <= LAST_MS:
        assert from_datetime(moment) == expected
    else:
        with pytest.raises(ValueError, match="0001-01-01"):
            from_datetime(moment)


@given(st.text())
@example("٢٠٣٠-01-01T00:00:00Z")  # Arabic-Indic digits
@example("\uff12\uff10\uff13\uff10-01-01T00:00:00Z")  # full-width digits
@example("2030-01-01T00:00:00.²Z")
@example("10000-01-01T00:00:00Z")
@example("0000-12-31T23:59:59Z")
def test_any_text_parses_into_the_range_or_raises_a_value_error(text: str) -> None:
    try:
        ms = from_rfc3339(text)
    except ValueError:
        return
    assert FIRST_MS <= ms <= LAST_MS
    assert text.isascii()


@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS), st.integers(min_value=FIRST_MS, max_value=LAST_MS))
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
        "2030-01-01T00:00:00+00:60",
        "2030-12-31T23:59:60Z",  # a leap second: not a time Python (or msgspec) can hold
        "1800000000000",
        "2030-W01-1T00:00:00Z",  # ISO 8601, not RFC 3339
        "20300101T000000Z",
        "2030-01-01T00Z",
        "2030-01-01T00:00:00,5Z",
        "2030-01-01T00:00:00+01:00:30",
        "2030-01-01T00:00:00.Z",
        "٢٠٣٠-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+00:01",
    ],
)
def test_naive_or_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the mistake
        from_rfc3339(text)


def test_a_naive_time_is_refused_with_a_hint_about_the_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        from_rfc3339("2030-01-01T00:00:00")

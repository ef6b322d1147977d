"""Base62 (``0-9A-Za-z``): exact encodings, round trips, and fixed-width strings that sort like their numbers."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystile.core import base62


def test_the_alphabet_is_digits_then_upper_then_lower_case() -> None:
    expected = string.digits + string.ascii_uppercase + string.ascii_lowercase
    assert expected == base62.ALPHABET
    assert sorted(base62.ALPHABET) == list(base62.ALPHABET)  # ASCII order is numeric order


@pytest.mark.parametrize(
    ("number", "width", "text"),
    [(0, 0, "0"), (9, 0, "9"), (10, 0, "A"), (61, 0, "z"), (62, 0, "10"), (62**2 - 1, 0, "zz"), (0, 6, "000000"),
     (61, 3, "00z"), (2**32 - 1, 6, "4gfFC3")],
)  # fmt: skip
def test_encodes_known_values(number: int, width: int, text: str) -> None:
    assert base62.encode(number, width) == text
    assert base62.decode(text) == number


def test_width_is_a_minimum_not_a_truncation() -> None:
    assert base62.encode(62**3, 2) == "1000"


def test_negative_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        base62.encode(-1)


@pytest.mark.parametrize("text", ["-1", "ab_c", "é", "a b"])
def test_decoding_a_character_outside_the_alphabet_fails(text: str) -> None:
    with pytest.raises(ValueError, match="not a base62 character"):
        base62.decode(text)


@given(st.integers(min_value=0, max_value=2**200))
def test_round_trip(number: int) -> None:
    assert base62.decode(base62.encode(number)) == number


@given(st.integers(min_value=0, max_value=2**128 - 1), st.integers(min_value=0, max_value=2**128 - 1))
def test_fixed_width_strings_sort_like_their_numbers(a: int, b: int) -> None:
    width = 22  # wide enough for any 128-bit number (62**22 > 2**128)
    assert (base62.encode(a, width) < base62.encode(b, width)) == (a < b)
    assert len(base62.encode(a, width)) == width

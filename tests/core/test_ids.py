"""Object ids: a type prefix and 22 base62 characters whose order is the order of creation (by millisecond)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from keystile.core.ids import ID_LENGTH, looks_like_id, new_id

MAX_MS = 2**48 - 1


def test_an_id_is_the_kind_and_22_base62_characters() -> None:
    value = new_id("key", 1_800_000_000_000)
    assert re.fullmatch(r"key_[0-9A-Za-z]{22}", value)
    assert ID_LENGTH == 22


def test_ids_made_in_the_same_millisecond_differ() -> None:
    assert len({new_id("key", 1_800_000_000_000) for _ in range(1000)}) == 1000


@given(st.lists(st.integers(min_value=0, max_value=MAX_MS), min_size=2, max_size=50, unique=True))
def test_ids_sort_by_creation_time_across_milliseconds(times: list[int]) -> None:
    made = [(new_id("key", at), at) for at in times]

    by_id = [at for _, at in sorted(made)]

    assert by_id == sorted(times)


@given(st.integers(min_value=0, max_value=MAX_MS - 1))
def test_an_id_of_the_next_millisecond_sorts_after_any_id_of_this_one(at: int) -> None:
    assert max(new_id("evt", at) for _ in range(5)) < min(new_id("evt", at + 1) for _ in range(5))


def test_ids_keep_a_fixed_width_from_the_epoch_to_the_end_of_48_bits() -> None:
    assert len(new_id("api", 0)) == len(new_id("api", MAX_MS)) == len("api_") + ID_LENGTH


def test_looks_like_id_accepts_ids_of_the_named_kind_only() -> None:
    value = new_id("key", 1_800_000_000_000)
    assert looks_like_id(value, "key")
    assert not looks_like_id(value, "api")
    assert not looks_like_id("key_", "key")
    assert not looks_like_id("key_abc/../x", "key")
    assert not looks_like_id("key_" + "a" * 41, "key")

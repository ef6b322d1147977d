"""Object ids: a type prefix and 22 base62 characters whose order is the order of creation (by millisecond)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystile.core import keys as keyformat
from keystile.core.ids import ID_LENGTH, accepted_request_id, carries_key, looks_like_id, new_id

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


# -- request ids a client may choose ---------------------------------------------------------------------------


@pytest.mark.parametrize("sane", ["trace-42.a_b", "req_" + "0" * 32, "r" * 128, "a_" + "0" * 37, "0" * 128])
def test_a_sane_request_id_is_accepted(sane: str) -> None:
    assert accepted_request_id(sane) == sane
    assert accepted_request_id(sane, key="ks_" + "A" * 38) == sane


@pytest.mark.parametrize(
    "insane",
    ["", "r" * 129, "no spaces", "trace\r\nx", "ünïcode", "٣", "a/b", "a;b"],
)
def test_a_request_id_of_another_shape_is_refused(insane: str) -> None:
    assert accepted_request_id(insane) is None


def test_a_request_id_holding_a_key_shape_or_the_requests_key_is_refused() -> None:
    key = keyformat.generate("ks")
    root = keyformat.generate(keyformat.ROOT_PREFIX)
    for value in (key, root, f"trace.{key}", f"{key}-2", "_" + key.rpartition("_")[2], "x_" + "Z" * 40):
        assert accepted_request_id(value) is None, value
    imported = "sk_live_" + "a1B2" * 6  # another shape: only the request's own key can tell
    assert accepted_request_id(imported) == imported
    assert accepted_request_id(imported, key=imported) is None
    assert accepted_request_id(f"trace-{imported}", key=imported) is None


def test_a_value_carries_a_key_when_it_holds_a_key_shape_or_the_requests_key() -> None:
    key = keyformat.generate("ks")
    assert carries_key(key)
    assert carries_key(f"tenant {key} here")
    assert not carries_key("api_0359eGEsbCWxEkuFaEFGWV")  # an id is not a key
    imported = "kong-" + "x" * 20
    assert not carries_key(f"tag:{imported}")
    assert carries_key(f"tag:{imported}", key=imported)
    assert not carries_key("plain", key="")


@given(st.text(max_size=200), st.one_of(st.none(), st.text(min_size=1, max_size=60)))
def test_an_accepted_request_id_is_safe_whatever_is_sent(value: str, key: str | None) -> None:
    accepted = accepted_request_id(value, key)
    if accepted is not None:
        assert accepted == value
        assert re.fullmatch(r"[A-Za-z0-9._\-]{1,128}", accepted)
        assert not re.search(r"_[0-9A-Za-z]{38}", accepted)
        assert key is None or key not in accepted

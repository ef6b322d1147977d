"""SPEC V4: where keys travel, and what happens when a request carries two."""

from __future__ import annotations

import pytest

from keystile.errors import Unauthenticated
from keystile.http.credentials import extract_key

KEY = "ks_3Fx9aaaaaaaaaaaaaaaaaaaaaaaaaaaa000000"
OTHER = "ks_9Zzzbbbbbbbbbbbbbbbbbbbbbbbbbbbb000000"


def test_a_bearer_token_is_the_key() -> None:
    assert extract_key([(b"authorization", f"Bearer {KEY}".encode())]) == (KEY, "bearer")


def test_the_bearer_scheme_is_case_insensitive_and_spaces_are_trimmed() -> None:
    assert extract_key([(b"authorization", f"  bearer   {KEY}  ".encode())]) == (KEY, "bearer")


def test_the_x_api_key_header_carries_a_key() -> None:
    assert extract_key([(b"x-api-key", KEY.encode())]) == (KEY, "header")


def test_the_api_key_query_parameter_carries_a_key_and_says_so() -> None:
    assert extract_key([], f"page=2&api_key={KEY}".encode()) == (KEY, "query")


def test_a_percent_encoded_query_key_is_decoded() -> None:
    assert extract_key([], b"api_key=ks_abc%2Bdef") == ("ks_abc+def", "query")


def test_no_key_anywhere_is_none() -> None:
    assert extract_key([(b"accept", b"*/*")], b"page=2") is None


def test_other_authorization_schemes_carry_no_key() -> None:
    assert extract_key([(b"authorization", b"Basic dXNlcjpwYXNz")]) is None


def test_empty_values_carry_no_key() -> None:
    assert extract_key([(b"authorization", b"Bearer "), (b"x-api-key", b"")], b"api_key=") is None


def test_the_same_key_in_every_channel_is_fine_and_keeps_the_first_channel() -> None:
    headers = [(b"authorization", f"Bearer {KEY}".encode()), (b"x-api-key", KEY.encode())]
    assert extract_key(headers, f"api_key={KEY}".encode()) == (KEY, "bearer")


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ([(b"authorization", f"Bearer {KEY}".encode()), (b"x-api-key", OTHER.encode())], b""),
        ([(b"x-api-key", KEY.encode())], f"api_key={OTHER}".encode()),
        ([(b"x-api-key", KEY.encode()), (b"x-api-key", OTHER.encode())], b""),
        ([], f"api_key={KEY}&api_key={OTHER}".encode()),
    ],
)
def test_two_different_keys_are_ambiguous(headers: list[tuple[bytes, bytes]], query: bytes) -> None:
    with pytest.raises(Unauthenticated) as caught:
        extract_key(headers, query)
    assert caught.value.code == "ambiguous_credentials"
    assert KEY not in caught.value.detail
    assert OTHER not in caught.value.detail


def test_a_body_is_no_channel_for_keys() -> None:
    # The function takes headers and the query string only: a key in a form or JSON body is never read.
    assert extract_key([(b"content-type", b"application/json")], b"") is None

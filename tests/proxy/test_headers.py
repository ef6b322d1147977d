"""What the proxy changes in the messages it passes on, as units (the e2e tests show it on the wire)."""

from __future__ import annotations

import pytest

from keystile.proxy._headers import response_headers, strip_key_parameter, upstream_headers


def _h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in pairs]


def test_the_key_hop_by_hop_headers_and_client_written_claims_never_reach_the_upstream() -> None:
    incoming = _h(
        ("host", "api.example"),
        ("authorization", "Bearer ks_secret"),
        ("x-api-key", "ks_secret"),
        ("connection", "keep-alive, x-private"),
        ("x-private", "hop"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("expect", "100-continue"),
        ("x-keystile-key-id", "key_forged"),
        ("ratelimit-remaining", "1000"),
        ("x-forwarded-for", "6.6.6.6"),
        ("content-type", "application/json"),
        ("accept", "*/*"),
    )
    added = _h(("x-keystile-key-id", "key_real"))

    assert upstream_headers(incoming, added) == _h(
        ("content-type", "application/json"), ("accept", "*/*"), ("x-keystile-key-id", "key_real")
    )


def test_an_authorization_of_another_scheme_is_passed_on() -> None:
    basic = _h(("authorization", "Basic dXNlcjpwYXNz"))
    assert upstream_headers(basic, []) == basic


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", b""),
        (b"a=1&b=2", b"a=1&b=2"),
        (b"api_key=ks_x", b""),
        (b"a=1&api_key=ks_x&b=%20x", b"a=1&b=%20x"),
        (b"api%5Fkey=ks_x&a=1", b"a=1"),
        (b"my_api_key=1&api_key", b"my_api_key=1"),
    ],
)
def test_the_api_key_parameter_is_removed_and_the_rest_kept_byte_for_byte(query: bytes, expected: bytes) -> None:
    assert strip_key_parameter(query) == expected


def test_the_client_gets_the_upstream_answer_without_hop_by_hop_headers_and_its_own_ratelimit_wins() -> None:
    upstream = _h(
        ("content-type", "text/plain"),
        ("connection", "close"),
        ("transfer-encoding", "chunked"),
        ("ratelimit-limit", "7"),
    )
    added = _h(("ratelimit-limit", "10"), ("ratelimit-remaining", "9"))

    assert response_headers(upstream, added) == _h(
        ("content-type", "text/plain"), ("ratelimit-limit", "7"), ("ratelimit-remaining", "9")
    )

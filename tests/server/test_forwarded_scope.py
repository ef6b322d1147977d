"""Who the client is behind trusted proxies, from an ASGI scope: ``X-Forwarded-*`` believed only from them, read
from the right; what is sent on to an upstream."""

from __future__ import annotations

from typing import Any

import pytest

from keystile.http.forwarded import TrustedProxies, forwarded_chain

PROXIES = TrustedProxies(["127.0.0.0/8", "10.0.0.0/8"])


def _scope(peer: str | None, **headers: str) -> dict[str, Any]:
    return {
        "client": (peer, 1234) if peer else None,
        "headers": [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()],
    }


@pytest.mark.parametrize(
    ("scope", "client"),
    [
        (_scope("192.0.2.1"), "192.0.2.1"),
        (_scope("192.0.2.1", x_forwarded_for="6.6.6.6"), "192.0.2.1"),  # not a trusted proxy: its word is ignored
        (_scope("127.0.0.1"), "127.0.0.1"),
        (_scope("127.0.0.1", x_forwarded_for="203.0.113.9"), "203.0.113.9"),
        (_scope("127.0.0.1", x_forwarded_for="6.6.6.6, 203.0.113.9, 10.1.1.1"), "203.0.113.9"),
        (_scope("127.0.0.1", x_forwarded_for="10.2.2.2, 10.1.1.1"), "10.2.2.2"),
        (_scope("127.0.0.1", x_forwarded_for="garbage, 10.1.1.1"), "10.1.1.1"),
        (_scope(None), None),
    ],
    ids=["peer", "untrusted-peer", "trusted-alone", "one-hop", "spoofed-left", "all-trusted", "garbage", "socket"],
)
def test_the_client_is_the_first_untrusted_address_from_the_right(scope: dict[str, Any], client: str | None) -> None:
    assert PROXIES.client(scope) == client


def test_forwarded_headers_are_read_only_from_trusted_proxies() -> None:
    assert PROXIES.forwarded(_scope("10.0.0.1", x_forwarded_proto="https, http"), b"x-forwarded-proto") == "https"
    assert PROXIES.forwarded(_scope("192.0.2.1", x_forwarded_proto="https"), b"x-forwarded-proto") is None


def test_the_chain_sent_on_extends_a_trusted_one_and_replaces_any_other() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.9")]
    assert forwarded_chain(headers, "127.0.0.1", trusted=True) == "203.0.113.9, 127.0.0.1"
    assert forwarded_chain(headers, "192.0.2.1", trusted=False) == "192.0.2.1"
    assert forwarded_chain([], "192.0.2.1", trusted=True) == "192.0.2.1"

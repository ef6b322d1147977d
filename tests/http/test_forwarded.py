"""Who the client is behind proxies (SPEC V5, X1): forwarding headers believed from trusted peers only, and the
rightmost untrusted hop of X-Forwarded-For taken as the client."""

from __future__ import annotations

import pytest

from keystile.http.forwarded import TrustedProxies

PROXIES = TrustedProxies(["127.0.0.0/8", "::1/128", "10.0.5.0/24"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "real_ip", "client"),
    [
        ("127.0.0.1", b"203.0.113.7", None, "203.0.113.7"),
        ("127.0.0.1", b"198.51.100.1, 203.0.113.7", None, "203.0.113.7"),  # the left one is the client's claim
        ("127.0.0.1", b"203.0.113.7, 10.0.5.3", None, "203.0.113.7"),  # our own proxy chain is walked through
        ("127.0.0.1", b"10.0.5.9, 10.0.5.3", None, "10.0.5.9"),  # all ours: the leftmost is the nearest we know
        ("127.0.0.1", b"garbage, 10.0.5.3", None, "10.0.5.3"),  # a hop that is no address ends the walk
        ("127.0.0.1", b"2001:db8::1", None, "2001:db8::1"),
        ("127.0.0.1", None, b"203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", None, b"not an ip", "127.0.0.1"),
        ("127.0.0.1", None, None, "127.0.0.1"),
        ("::1", b"203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.50", b"10.1.2.3", b"10.1.2.3", "203.0.113.50"),  # not a proxy of ours: headers ignored
        (None, b"10.1.2.3", None, None),
    ],
)
def test_the_client_address(
    peer: str | None, forwarded_for: bytes | None, real_ip: bytes | None, client: str | None
) -> None:
    assert PROXIES.client_ip(peer, forwarded_for, real_ip) == client
    assert PROXIES.client_ip(peer, forwarded_for, real_ip) == client  # memoised alike


def test_only_configured_networks_are_trusted() -> None:
    assert PROXIES.trusts("127.0.0.1")
    assert PROXIES.trusts("10.0.5.200")
    assert PROXIES.trusts("::ffff:10.0.5.1")  # IPv4-mapped IPv6 is the IPv4 address
    assert not PROXIES.trusts("10.0.6.1")
    assert not PROXIES.trusts(None)
    assert not PROXIES.trusts("unix:/run/keystile.sock")

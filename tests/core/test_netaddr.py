"""IP allowlists: CIDR parsing and normalisation, and matching of client addresses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystile.core.netaddr import MAX_ALLOWLIST, allowed, compile_allowlist, normalise_allowlist, parse_cidr, parse_ip
from keystile.errors import InvalidInput


def permits(cidrs: list[str], ip: str) -> bool:
    address = parse_ip(ip)
    assert address is not None, ip
    return allowed(compile_allowlist(normalise_allowlist(cidrs)), address)


@pytest.mark.parametrize(
    ("cidrs", "ip", "expected"),
    [
        (["10.0.0.0/8"], "10.255.1.2", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["192.168.1.0/24"], "192.168.1.255", True),
        (["192.168.1.0/24"], "192.168.2.0", False),
        (["203.0.113.7"], "203.0.113.7", True),  # a single address
        (["203.0.113.7"], "203.0.113.8", False),
        (["203.0.113.7/32"], "203.0.113.7", True),
        (["0.0.0.0/0"], "198.51.100.1", True),
        (["2001:db8::/32"], "2001:db8:ffff::1", True),
        (["2001:db8::/32"], "2001:db9::1", False),
        (["2001:db8::1"], "2001:db8::1", True),
        (["2001:db8::1"], "2001:db8::2", False),
        (["2001:DB8::1/128"], "2001:0db8:0000::0001", True),  # any spelling of the same address
        (["::/0"], "2001:db8::1", True),
        (["::/0"], "10.0.0.1", False),  # versions never mix
        (["0.0.0.0/0"], "2001:db8::1", False),
        (["10.0.0.0/8", "2001:db8::/32"], "2001:db8::5", True),
        (["10.0.0.0/8", "2001:db8::/32"], "10.9.9.9", True),
        (["10.0.0.0/8", "2001:db8::/32"], "172.16.0.1", False),
    ],
)
def test_matching(cidrs: list[str], ip: str, expected: bool) -> None:
    assert permits(cidrs, ip) is expected


def test_an_ipv4_mapped_client_address_matches_as_ipv4() -> None:
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
    assert permits(["10.0.0.0/8"], "::ffff:10.1.2.3")
    assert not permits(["10.0.0.0/8"], "::ffff:11.1.2.3")


def test_an_ipv4_mapped_network_matches_its_ipv4_clients() -> None:
    assert permits(["::ffff:10.0.0.0/104"], "10.1.2.3")
    assert permits(["::ffff:10.0.0.0/104"], "::ffff:10.1.2.3")
    assert permits(["::ffff:203.0.113.7"], "203.0.113.7")
    assert not permits(["::ffff:10.0.0.0/104"], "11.0.0.1")


def test_an_empty_allowlist_compiles_to_nothing() -> None:
    assert compile_allowlist(normalise_allowlist([])) == ()


def test_normalisation_gives_canonical_networks_without_duplicates() -> None:
    assert normalise_allowlist(
        ["10.1.2.3/8", "10.0.0.0/8", "203.0.113.7", "2001:DB8:0::1/32", "::ffff:10.0.0.0/104", "::ffff:1.2.3.4"]
    ) == ("10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32", "1.2.3.4/32")


def test_normalised_allowlists_normalise_to_themselves() -> None:
    once = normalise_allowlist(["10.1.2.3/8", "2001:db8::1", "::ffff:10.0.0.0/104"])
    assert normalise_allowlist(once) == once


@pytest.mark.parametrize(
    "text",
    ["", "10.0.0", "10.0.0.256", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8/8", "2001:db8::/129", "2001:db8:::1",
     "abc", " 10.0.0.1", "10.0.0.1 ", "010.0.0.1", "10.0.0.0/255.0.0.1", "localhost", "10.0.0.0/ 8"],
)  # fmt: skip
def test_invalid_cidrs_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cidr(text)
    assert caught.value.code == "invalid_cidr"


def test_one_bad_entry_refuses_the_whole_allowlist() -> None:
    with pytest.raises(InvalidInput):
        normalise_allowlist(["10.0.0.0/8", "10.0.0.0/99"])


def test_an_allowlist_is_bounded() -> None:
    normalise_allowlist([f"10.0.{i}.0/24" for i in range(MAX_ALLOWLIST)])
    with pytest.raises(InvalidInput, match=f"at most {MAX_ALLOWLIST}"):
        normalise_allowlist([f"10.0.{i}.0/24" for i in range(MAX_ALLOWLIST + 1)])


@pytest.mark.parametrize("text", ["", "10.0.0.0/8", "10.0.0", "abc", "::ffff:10.0.0.0/104", "1"])
def test_parse_ip_returns_none_for_anything_but_one_address(text: str) -> None:
    assert parse_ip(text) is None


def test_parse_ip_gives_the_version_and_the_number() -> None:
    assert parse_ip("10.0.0.1") == (4, 0x0A000001)
    assert parse_ip("::1") == (6, 1)
    assert parse_ip("::ffff:10.0.0.1") == (4, 0x0A000001)


@given(
    st.ip_addresses(v=4),
    st.integers(min_value=0, max_value=32),
    st.ip_addresses(v=4),
)
def test_ipv4_matching_agrees_with_ipaddress(
    base: ipaddress.IPv4Address, length: int, client: ipaddress.IPv4Address
) -> None:
    network = ipaddress.ip_network(f"{base}/{length}", strict=False)
    assert permits([f"{base}/{length}"], str(client)) == (client in network)


@given(
    st.ip_addresses(v=6),
    st.integers(min_value=0, max_value=128),
    st.ip_addresses(v=6),
)
def test_ipv6_matching_agrees_with_ipaddress(
    base: ipaddress.IPv6Address, length: int, client: ipaddress.IPv6Address
) -> None:
    network = ipaddress.IPv6Network(f"{base}/{length}", strict=False)
    if network.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96")) or client.ipv4_mapped is not None:
        return  # IPv4-mapped networks and clients are matched as IPv4 (tested above)
    assert permits([f"{base}/{length}"], str(client)) == (client in network)

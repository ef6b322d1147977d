"""IP allowlists (CIDR lists) compiled to integer masks, so a check is a few integer operations.

:mod:`ipaddress` objects are used to parse and validate; matching uses ``(address & mask) == network``.
Parsed client addresses are memoised, since the same few clients call again and again.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from keystile.errors import InvalidInput

# (version, network, mask)
Network = tuple[int, int, int]
MAX_ALLOWLIST = 100


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse one CIDR (``10.0.0.0/8``, ``2001:db8::/32``, or a single address); raises :class:`InvalidInput`.

    An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) is returned as the IPv4 network it names.
    """
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidInput(f"{text[:60]!r} is not an IP network in CIDR notation", code="invalid_cidr") from None
    # Client addresses in ::ffff:0:0/96 are matched as IPv4 (see parse_ip), so such a network must be IPv4 too:
    # kept as IPv6 it would never match anyone.
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def normalise_allowlist(cidrs: Iterable[str]) -> tuple[str, ...]:
    """Validate a CIDR list and return it in canonical form (``10.1.2.3/8`` -> ``10.0.0.0/8``)."""
    result = tuple(dict.fromkeys(str(parse_cidr(cidr)) for cidr in cidrs))
    if len(result) > MAX_ALLOWLIST:
        raise InvalidInput(f"an allowlist holds at most {MAX_ALLOWLIST} networks", code="invalid_cidr")
    return result


def compile_allowlist(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Compile canonical CIDRs for :func:`allowed`."""
    compiled = []
    for cidr in cidrs:
        net = parse_cidr(cidr)
        compiled.append((net.version, int(net.network_address), int(net.netmask)))
    return tuple(compiled)


@functools.lru_cache(maxsize=8192)
def parse_ip(text: str) -> tuple[int, int] | None:
    """``(version, integer)`` of a client address, IPv4-mapped IPv6 taken as IPv4; ``None`` if not an address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address)


def allowed(networks: tuple[Network, ...], address: tuple[int, int]) -> bool:
    """Whether a parsed address lies in one of ``networks``."""
    version, value = address
    for net_version, network, mask in networks:  # noqa: SIM110 - a plain loop is faster on the hot path
        if net_version == version and value & mask == network:
            return True
    return False

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


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse one CIDR (``10.0.0.0/8``, ``2001:db8::/32``, or a single address); raises :class:`InvalidInput`."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidInput(f"{text[:60]!r} is not an IP network in CIDR notation", code="invalid_cidr") from None


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

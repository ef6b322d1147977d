"""Who is really calling: the peer of the connection, and what trusted proxies say about the client behind them.

``X-Forwarded-*`` headers are believed only from peers in ``KEYSTILE_TRUSTED_PROXIES`` (default: loopback), since
anyone else can write them. ``X-Forwarded-For`` is read from the right: each address a trusted proxy appended is
skipped, and the first one that is not trusted is the client (the leftmost entries are whatever the client sent).
"""

from __future__ import annotations

from collections.abc import Iterable

from keystile.core.netaddr import Network, allowed, compile_allowlist, parse_ip
from keystile.server.http import Headers, Scope, header


class TrustedProxies:
    """The networks whose ``X-Forwarded-*`` headers are believed."""

    __slots__ = ("_networks",)

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks: tuple[Network, ...] = compile_allowlist(cidrs)

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` (an IP as text) is a trusted proxy."""
        if address is None:
            return False
        parsed = parse_ip(address)
        return parsed is not None and allowed(self._networks, parsed)

    def client(self, scope: Scope) -> str | None:
        """The client's IP address: the peer's, or what trusted proxies in front of it say it was."""
        address = peer(scope)
        if not self.trusts(address):
            return address
        chain = header(scope["headers"], b"x-forwarded-for")
        if chain is None:
            return address
        for hop in reversed(chain.decode("latin-1").split(",")):
            hop = hop.strip()
            if parse_ip(hop) is None:
                break  # garbage: trust nothing further left of it
            address = hop
            if not self.trusts(hop):
                break
        return address

    def forwarded(self, scope: Scope, name: bytes) -> str | None:
        """An ``X-Forwarded-*`` header's value (``name`` lower-case), when a trusted proxy sent it."""
        if not self.trusts(peer(scope)):
            return None
        value = header(scope["headers"], name)
        if value is None:
            return None
        # A chain of proxies may have appended values; the first is what the client used.
        return value.decode("latin-1").split(",")[0].strip() or None


def peer(scope: Scope) -> str | None:
    """The address at the other end of the connection (``None`` over a Unix socket)."""
    client = scope.get("client")
    return client[0] if client else None


def forwarded_chain(headers: Headers, address: str | None, trusted: bool) -> str | None:
    """The ``X-Forwarded-For`` to send on: a trusted peer's chain with its address appended, else the address."""
    if address is None:
        return None
    if trusted:
        chain = header(headers, b"x-forwarded-for")
        if chain is not None and chain.strip():
            return f"{chain.decode('latin-1').strip()}, {address}"
    return address

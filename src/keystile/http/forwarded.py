"""Who is really asking: the client address and original request behind a trusted proxy (SPEC V5, X1).

A proxy in front of Keystile (nginx ``auth_request``, Traefik, Caddy, Envoy) calls it in the client's place and
says who the client was in ``X-Forwarded-For`` / ``X-Real-IP``, and what it asked for in ``X-Original-URI`` /
``X-Forwarded-Uri`` and ``X-Original-Method`` / ``X-Forwarded-Method``. Anyone can send those headers, so they
are believed only when the direct peer is one of ``KEYSTILE_TRUSTED_PROXIES``; otherwise the peer itself is the
client. In a chain of proxies (``X-Forwarded-For: client, proxy1, proxy2``) the client is the rightmost address
that is not a trusted proxy: entries left of it were written by the client itself and prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from keystile.core.netaddr import Network, allowed, compile_allowlist, parse_ip
from keystile.http.asgi import Headers, Scope, header

_MEMO_LIMIT = 1024
_UNKNOWN = object()


class TrustedProxies:
    """The networks whose forwarding headers are believed, with the decisions memoised per address."""

    __slots__ = ("_clients", "_memo", "_networks")

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks: tuple[Network, ...] = compile_allowlist(cidrs)
        self._memo: dict[str, bool] = {}
        self._clients: dict[tuple[str | None, bytes | None, bytes | None], str | None] = {}

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` (a peer or a hop of ``X-Forwarded-For``) is a trusted proxy."""
        if address is None:
            return False
        trusted = self._memo.get(address)
        if trusted is None:
            parsed = parse_ip(address)
            trusted = parsed is not None and allowed(self._networks, parsed)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[address] = trusted
        return trusted

    def client_ip(self, peer: str | None, forwarded_for: bytes | None, real_ip: bytes | None) -> str | None:
        """The client's address: from the forwarding headers when ``peer`` is trusted, else ``peer``.

        A hop that is not an IP address ends the walk: the hop to its right (a trusted proxy) is the client as far
        as anyone can tell.
        """
        if not self.trusts(peer):
            return peer
        # The same clients come through the same proxies again and again.
        memo = (peer, forwarded_for, real_ip)
        client = self._clients.get(memo, _UNKNOWN)
        if client is _UNKNOWN:
            client = self._walk(peer, forwarded_for, real_ip)
            if len(self._clients) >= _MEMO_LIMIT:
                self._clients.clear()
            self._clients[memo] = client
        return client  # type: ignore[return-value]

    def client(self, scope: Scope) -> str | None:
        """The client's IP address of an ASGI request: the peer's, or what trusted proxies in front of it say."""
        headers = scope["headers"]
        return self.client_ip(peer(scope), header(headers, b"x-forwarded-for"), header(headers, b"x-real-ip"))

    def forwarded(self, scope: Scope, name: bytes) -> str | None:
        """An ``X-Forwarded-*`` header's value (``name`` lower-case), when a trusted proxy sent it."""
        if not self.trusts(peer(scope)):
            return None
        value = header(scope["headers"], name)
        if value is None:
            return None
        # A chain of proxies may have appended values; the first is what the client used.
        return value.decode("latin-1").split(",")[0].strip() or None

    def _walk(self, peer: str | None, forwarded_for: bytes | None, real_ip: bytes | None) -> str | None:
        if forwarded_for:
            client = peer
            for hop in reversed(forwarded_for.decode("latin-1").split(",")):
                hop = hop.strip()
                if parse_ip(hop) is None:
                    return client
                client = hop
                if not self.trusts(hop):
                    return hop
            return client  # every hop is a proxy of ours: the leftmost is as close to the client as we get
        if real_ip:
            text = real_ip.decode("latin-1").strip()
            if parse_ip(text) is not None:
                return text
        return peer


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

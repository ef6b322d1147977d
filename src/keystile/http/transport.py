"""Transport security (SPEC S1): HSTS on every HTTPS response, and a warning when keys travel over plain HTTP.

Without TLS, Keystile cannot stop a client from sending a key in clear text, but it can say so: the first request
that carries a key (``Authorization``, ``X-API-Key``, ``api_key``, or a body to ``POST /v1/keys/verify``) over
plain HTTP from a client off this machine is logged as a warning, once per client address per hour.

The connection Keystile sees is judged, and kept cheap: a loopback peer is never warned about (it is a client on
this machine, or a reverse proxy that is where TLS belongs), and a trusted proxy (``KEYSTILE_TRUSTED_PROXIES``)
that says ``X-Forwarded-Proto: https`` is believed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

from keystile.config import Settings
from keystile.core.clock import Clock, SystemClock
from keystile.http.asgi import Message, Scope, Send
from keystile.http.credentials import QUERY_PARAMETER
from keystile.http.forwarded import TrustedProxies

log = logging.getLogger("keystile.security")

WARN_EVERY_S = 3600.0
_MAX_REMEMBERED = 10_000
_KEY_HEADERS = frozenset({b"authorization", b"x-api-key"})


def hsts_header(value: str) -> tuple[bytes, bytes] | None:
    """The ``Strict-Transport-Security`` header for a setting's value (``off``: none)."""
    return None if value == "off" else (b"strict-transport-security", value.encode("latin-1"))


def with_header(send: Send, extra: tuple[bytes, bytes]) -> Send:
    """``send`` that adds ``extra`` to the response's headers."""

    async def send_with(message: Message) -> None:
        if message["type"] == "http.response.start":
            # A new message: the fast path sends cached start messages, which must not grow.
            message = {**message, "headers": [*message.get("headers", ()), extra]}
        await send(message)

    return send_with


def carries_key(scope: Scope, body_paths: frozenset[str] = frozenset()) -> bool:
    """Whether the request carries a key: in a header, in the query, or in the body of one of ``body_paths``."""
    if scope["path"] in body_paths:
        return True
    for name, _ in scope["headers"]:
        if name in _KEY_HEADERS:
            return True
    return QUERY_PARAMETER.encode() + b"=" in scope.get("query_string", b"")


def is_loopback(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped.is_loopback
    return parsed.is_loopback


def _plain_key(scope: Scope, trusted: TrustedProxies, address: str, body_paths: frozenset[str]) -> bool:
    """Whether this request from ``address``, a peer off this machine, carries a key over plain HTTP."""
    if scope.get("scheme", "http") != "http":
        return False
    if trusted.trusts(address) and (trusted.forwarded(scope, b"x-forwarded-proto") or "").lower() == "https":
        return False
    return carries_key(scope, body_paths)


class PlainHttpWatch:
    """Warns, at most once an hour per client, about keys that arrive over plain HTTP (see the module docstring).

    Called with every request's scope: whether a peer is loopback is remembered (parsing its address on every
    request cost more than the verification it came with), so a loopback peer costs one dict lookup.
    """

    __slots__ = ("_body_paths", "_clock", "_log", "_loopback", "_trusted", "_warned")

    def __init__(
        self,
        trusted: TrustedProxies,
        body_paths: frozenset[str] = frozenset(),
        clock: Clock | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._trusted = trusted
        self._body_paths = body_paths
        self._clock = clock or SystemClock()
        self._log = warn or _warn
        self._loopback: dict[str, bool] = {}
        """Peer address → whether it is loopback (forgotten all at once when it holds too many)."""
        self._warned: dict[str, float] = {}

    def __call__(self, scope: Scope) -> None:
        client = scope.get("client")
        if client is None:
            return
        address = client[0]
        loopback = self._loopback.get(address)
        if loopback is None:
            loopback = is_loopback(address)
            if len(self._loopback) >= _MAX_REMEMBERED:
                self._loopback.clear()
            self._loopback[address] = loopback
        if loopback or not _plain_key(scope, self._trusted, address, self._body_paths):
            return
        now = self._clock.monotonic()
        if self._warned.get(address, -WARN_EVERY_S) + WARN_EVERY_S > now:
            return
        if len(self._warned) >= _MAX_REMEMBERED:
            self._warned.clear()
        self._warned[address] = now
        self._log(address)


def _warn(address: str) -> None:
    log.warning(
        "a key arrived over plain HTTP from %s: anyone on the way can read it; serve HTTPS (--tls-cert and "
        "--tls-key) or put a TLS-terminating proxy in front",
        address,
        extra={"client_ip": address, "event": "plaintext_key"},
    )


def transport_security(
    settings: Settings, body_paths: frozenset[str] = frozenset()
) -> tuple[tuple[bytes, bytes] | None, PlainHttpWatch | None]:
    """What an app listening as ``settings`` say does for S1: ``(HSTS header, None)`` over HTTPS, else
    ``(None, a plain-HTTP watch)``. ``body_paths`` are the paths whose request bodies carry keys."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        return hsts_header(settings.hsts), None
    return None, PlainHttpWatch(TrustedProxies(settings.trusted_proxies), body_paths)

"""What the proxy changes in the messages it passes on (SPEC I4).

Towards the upstream: the key is removed from every channel it can travel by (SPEC V4: ``Authorization: Bearer``,
``X-API-Key``, the ``api_key`` query parameter), so the upstream never sees or logs it; hop-by-hop headers and
anything a client sent as ``X-Keystile-*`` or
``RateLimit-*`` go too (the upstream must be able to believe those); then the caller's
identity, its rate-limit state and ``X-Forwarded-*`` are added. Back to the client: hop-by-hop headers are removed
and the rate-limit state is added unless the upstream set its own. The values of the identity and rate-limit
headers are forward auth's (:mod:`keystile.http.answers`).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote_plus

from keystile.http.asgi import Headers
from keystile.http.credentials import QUERY_PARAMETER

HeaderList = list[tuple[bytes, bytes]]

# RFC 9110 7.6.1, plus the proxy ones everybody strips; "host" is the upstream's, set by the client library.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# "expect": this side answered any 100-continue already; the body follows whatever the upstream says.
_REQUEST_DROPS = HOP_BY_HOP | {
    b"host",
    b"expect",
    b"x-api-key",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",  # sent on as the proxy read it: the client's when it is sane, else a new one
}
_IDENTITY_PREFIX = b"x-keystile-"
_RATELIMIT_PREFIX = b"ratelimit-"


def _connection_tokens(headers: Headers) -> set[bytes]:
    """Header names a ``Connection`` header declares hop-by-hop (RFC 9110 7.6.1)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return named


def _is_bearer(value: bytes) -> bool:
    return value[:7].lower() == b"bearer "


def upstream_headers(headers: Headers, added: Iterable[tuple[bytes, bytes]]) -> HeaderList:
    """The client's request headers as the upstream gets them: without the key, hop-by-hop headers, identity
    claims or forwarding headers the client wrote itself; with ``added``."""
    declared = _connection_tokens(headers)
    kept = [
        (name, value)
        for name, value in headers
        if name not in _REQUEST_DROPS
        and name not in declared
        and not name.startswith((_IDENTITY_PREFIX, _RATELIMIT_PREFIX))
        # Another scheme (Basic, a signature) is the upstream's business; only a bearer token is a key here.
        and not (name == b"authorization" and _is_bearer(value))
    ]
    kept.extend(added)
    return kept


def strip_key_parameter(query_string: bytes) -> bytes:
    """The query string without ``api_key`` parameters (however their name is percent-encoded); every other byte
    of it is kept as sent."""
    if not query_string:
        return query_string
    kept = [
        part
        for part in query_string.split(b"&")
        if unquote_plus(part.partition(b"=")[0].decode("latin-1")) != QUERY_PARAMETER
    ]
    return b"&".join(kept)


def response_headers(headers: Iterable[tuple[bytes, bytes]], added: HeaderList) -> HeaderList:
    """The upstream's response headers as the client gets them: without hop-by-hop ones; with ``added`` unless
    the upstream sent a header of the same name."""
    raw = list(headers)
    declared = _connection_tokens(raw)
    kept = [(name, value) for name, value in raw if name not in HOP_BY_HOP and name not in declared]
    present = {name for name, _ in kept}
    kept.extend((name, value) for name, value in added if name not in present)
    return kept

"""Where keys travel in a request (SPEC V4, K6), parsed in one place.

A root key comes as ``Authorization: Bearer <root key>`` (:func:`root_key`). A key to a protected API comes as:

``Authorization: Bearer <key>`` (preferred), ``X-API-Key: <key>``, or the query parameter ``api_key`` (accepted,
but reported as a weaker channel: URLs end up in logs and browser history). There is no body channel. The same key
in several places is fine; two different keys in one request are refused as ``ambiguous_credentials`` (as Kong's
"duplicate API key"), rather than guessing which one the client meant.

Forward auth (``/v1/auth``), the ASGI/WSGI middleware and the proxy all read keys through :func:`extract_key`;
both parse the scheme through :func:`bearer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal
from urllib.parse import parse_qsl

from keystile.errors import Unauthenticated

Channel = Literal["bearer", "header", "query"]
QUERY_PARAMETER = "api_key"
MISSING_ROOT_KEY = "this route needs a root key: send it as Authorization: Bearer <root key>"
_AMBIGUOUS = "the request carries two different keys; send one"
AMBIGUOUS_AUTHORIZATION = "the request carries two different Authorization headers; send one"


def bearer(value: bytes) -> str | None:
    """The token of an ``Authorization`` header's value when its scheme is Bearer (in any case), else ``None``."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token.decode("latin-1") if token else None


def root_key(authorization: bytes | None) -> str:
    """The root key of a request's ``Authorization`` header; raises :class:`Unauthenticated`
    (``missing_root_key``) when there is none."""
    token = bearer(authorization) if authorization is not None else None
    if token is None:
        raise Unauthenticated(MISSING_ROOT_KEY, code="missing_root_key")
    return token


def authorization_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The request's ``Authorization`` header, or ``None``; raises :class:`Unauthenticated`
    (``ambiguous_credentials``) when it comes twice with different values, rather than taking one of them."""
    found: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if found is not None and value != found:
                raise Unauthenticated(AMBIGUOUS_AUTHORIZATION, code="ambiguous_credentials")
            found = value
    return found


def extract_key(headers: Iterable[tuple[bytes, bytes]], query_string: bytes = b"") -> tuple[str, Channel] | None:
    """The key a request carries and the channel it came by, or ``None`` when it carries none.

    ``headers`` are ASGI-style ``(lower-case name, value)`` pairs. An ``Authorization`` header with a scheme
    other than Bearer carries no key. Raises :class:`Unauthenticated` with code ``ambiguous_credentials`` when
    two different keys arrive (in two channels, or twice in one).
    """
    found: str | None = None
    channel: Channel | None = None

    def offer(value: str, via: Channel) -> None:
        nonlocal found, channel
        if not value:
            return
        if found is None:
            found, channel = value, via
        elif value != found:
            raise Unauthenticated(_AMBIGUOUS, code="ambiguous_credentials")

    for name, raw in headers:
        if name == b"authorization":
            token = bearer(raw)
            if token is not None:
                offer(token, "bearer")
        elif name == b"x-api-key":
            offer(raw.decode("latin-1").strip(), "header")
    if QUERY_PARAMETER.encode() in query_string:
        for param, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if param == QUERY_PARAMETER:
                offer(value.strip(), "query")
    if found is None or channel is None:
        return None
    # A key found first in a header but repeated in the query keeps the stronger channel it arrived by.
    return found, channel

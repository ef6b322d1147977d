"""Root-key authentication of the HTTP API (SPEC K6): ``Authorization: Bearer <root key>``."""

from __future__ import annotations

from keystile.errors import Unauthenticated
from keystile.server.http import Headers, Scope, header
from keystile.service import Actor, Keystile, Principal

MISSING_ROOT_KEY = "this route needs a root key: send it as Authorization: Bearer <root key>"
_MAX_USER_AGENT = 512


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or ``None`` when there is none."""
    value = header(headers, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token.decode("latin-1") if token else None


async def authenticate(ks: Keystile, headers: Headers) -> Principal:
    """The principal of the request's root key.

    Raises :class:`Unauthenticated` with code ``missing_root_key`` when there is no bearer token and
    ``invalid_root_key`` when it is unknown, revoked or expired.
    """
    token = bearer_token(headers)
    if token is None:
        raise Unauthenticated(MISSING_ROOT_KEY, code="missing_root_key")
    principal = ks.root_keys.authenticate_cached(token)
    if principal is None:
        principal = await ks.root_keys.authenticate(token)
    return principal


def actor_for(principal: Principal, scope: Scope) -> Actor:
    """Who acts, from where: the client address of the connection and its ``User-Agent``."""
    client = scope.get("client")
    agent = header(scope["headers"], b"user-agent")
    return Actor(
        principal,
        client[0] if client else None,
        agent[:_MAX_USER_AGENT].decode("latin-1") if agent else None,
    )

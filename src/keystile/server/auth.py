"""Root-key authentication of the HTTP API (SPEC K6): ``Authorization: Bearer <root key>``."""

from __future__ import annotations

from keystile.http.asgi import Headers, Scope, header
from keystile.http.credentials import authorization_of, root_key
from keystile.service import Actor, Keystile, Principal

_MAX_USER_AGENT = 512


async def authenticate(ks: Keystile, headers: Headers) -> Principal:
    """The principal of the request's root key.

    Raises :class:`~keystile.errors.Unauthenticated` with code ``missing_root_key`` when there is no bearer token,
    ``ambiguous_credentials`` when two different ``Authorization`` headers came, and ``invalid_root_key`` when it is
    unknown, revoked or expired.
    """
    return await ks.root_keys.authenticate(root_key(authorization_of(headers)))


def actor_for(principal: Principal, scope: Scope) -> Actor:
    """Who acts, from where: the client address of the connection and its ``User-Agent``."""
    client = scope.get("client")
    agent = header(scope["headers"], b"user-agent")
    return Actor(
        principal,
        client[0] if client else None,
        agent[:_MAX_USER_AGENT].decode("latin-1") if agent else None,
    )

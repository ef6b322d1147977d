"""API tokens (SPEC T1, T2): ``POST /v1/tokens``, ``POST /v1/tokens/verify`` and ``GET /.well-known/jwks.json``."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from keystile.core.permissions import MAX_SLUG_LENGTH, SLUG_RE
from keystile.core.timefmt import to_rfc3339
from keystile.schemas.common import TimeOut, _In

MAX_TOKEN_TTL_S = 3600
MAX_TOKEN_LENGTH = 16 * 1024

TokenPermission = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_SLUG_LENGTH,
        pattern=f"^(?:{SLUG_RE.pattern})$",
        description="A permission the key holds, such as `docs.read` (no wildcards).",
    ),
]


class TokenRequest(_In):
    ttl_s: Annotated[
        int, Meta(ge=1, le=MAX_TOKEN_TTL_S, description="Seconds until the token expires: 1 to 3,600 (default 900).")
    ] = 900
    permissions: (
        Annotated[
            list[TokenPermission],
            Meta(
                max_length=100,
                description="The token's scope: permissions the key holds (default: all of the key's permissions).",
            ),
        ]
        | None
    ) = None


class TokenOut(Struct, omit_defaults=False):
    """A signed API token (an EdDSA JWT)."""

    token: Annotated[str, Meta(description="The JWT: send it as `Authorization: Bearer <token>`.")]
    token_type: Literal["Bearer"]
    expires_in: Annotated[int, Meta(description="Seconds until it expires.")]
    expires_at: TimeOut
    scope: Annotated[str, Meta(description="The token's permissions, separated by spaces.")]


class TokenVerifyRequest(_In):
    token: Annotated[str, Meta(max_length=MAX_TOKEN_LENGTH, description="The token to check.")]


class TokenVerifyResponse(Struct, omit_defaults=False):
    valid: bool
    code: Literal["VALID", "NOT_FOUND", "REVOKED", "DISABLED", "EXPIRED"]
    key_id: str | None = None
    api_id: str | None = None
    sub: str | None = None
    scope: str | None = None
    exp: Annotated[int, Meta(description="When the token expires, in seconds since the epoch.")] | None = None
    expires_at: TimeOut | None = None
    iat: int | None = None
    jti: str | None = None
    kid: str | None = None


class Jwk(Struct):
    """A public key that signs API tokens (RFC 8037 OKP, Ed25519)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class Jwks(Struct):
    """A JSON Web Key Set (RFC 7517)."""

    keys: list[Jwk]


def token_out(token: str, expires_in: int, expires_at_s: int, scope: str) -> TokenOut:
    return TokenOut(token, "Bearer", expires_in, to_rfc3339(expires_at_s * 1000) or "", scope)

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


# -- OAuth 2.0 (SPEC T3): form bodies, documented for the OpenAPI document; the routes parse them themselves ------


class OAuthTokenForm(_In):
    """A token request (RFC 6749 section 4.4), form-encoded. The client authenticates by HTTP Basic
    (`client_secret_basic`) or with `client_id` and `client_secret` in this form (`client_secret_post`)."""

    grant_type: Annotated[str, Meta(max_length=64, description="`client_credentials`.")]
    client_id: Annotated[str, Meta(max_length=128, description="The key's id (client_secret_post).")] | None = None
    client_secret: Annotated[str, Meta(max_length=512, description="The key (client_secret_post).")] | None = None
    scope: Annotated[str, Meta(max_length=8192, description="Permissions the key holds, space-separated.")] | None = (
        None
    )


class OAuthTokenOut(Struct, omit_defaults=False):
    """An access token response (RFC 6749 section 5.1)."""

    access_token: Annotated[str, Meta(description="A JWT access token (RFC 9068, `typ: at+jwt`).")]
    token_type: Literal["Bearer"]
    expires_in: Annotated[int, Meta(description="Seconds until it expires.")]
    scope: Annotated[str, Meta(description="The token's permissions, separated by spaces.")]


class OAuthIntrospectForm(_In):
    """A token introspection request (RFC 7662), form-encoded."""

    token: Annotated[str, Meta(max_length=MAX_TOKEN_LENGTH, description="The access token to check.")]
    token_type_hint: Annotated[str, Meta(max_length=64, description="Ignored.")] | None = None


class OAuthIntrospection(Struct, omit_defaults=True):
    """A token introspection answer (RFC 7662 section 2.2): `{active: false}` for anything but a valid token."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    sub: str | None = None
    exp: int | None = None
    iat: int | None = None
    iss: str | None = None
    aud: str | None = None
    jti: str | None = None
    token_type: str | None = None


class OAuthMetadata(Struct, omit_defaults=False):
    """Authorization server metadata (RFC 8414)."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    introspection_endpoint: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    introspection_endpoint_auth_methods_supported: list[str]
    response_types_supported: list[str]
    scopes_supported: list[str]

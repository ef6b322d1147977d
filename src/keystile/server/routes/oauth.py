"""OAuth 2.0 client credentials (SPEC T3): ``POST /oauth/token`` (RFC 6749 section 4.4), ``POST /oauth/introspect``
(RFC 7662) and ``GET /.well-known/oauth-authorization-server`` (RFC 8414), over :class:`TokenService`.

The client is a key: ``client_id`` is the key's id and ``client_secret`` the key. The access token is the API
token of ``POST /v1/tokens`` in the RFC 9068 profile (header ``typ: at+jwt``; claims ``aud`` = the API id and
``client_id`` = the key id). Errors of the token endpoint are RFC 6749 section 5.2 JSON ``{error,
error_description}``; a key that is rate limited or out of credits is answered 429 (a problem, with
``Retry-After``) rather than ``invalid_client``, since its credentials are right. Failed client authentication
counts toward the per-IP failure limit of ``/v1/auth``: the same limiter (:meth:`Runtime.failure_limiter`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.responses import Response

from keystile.core.verify import Code, KeyCheck
from keystile.errors import InvalidInput, RateLimited
from keystile.http.answers import retry_after_s, whole_seconds
from keystile.http.asgi import encode_json, read_body
from keystile.http.refusals import refusal
from keystile.operations import OAUTH_INTROSPECT, OAUTH_METADATA, OAUTH_TOKEN
from keystile.schemas import OAuthIntrospection, OAuthMetadata, OAuthTokenOut
from keystile.server.examples import example
from keystile.server.routing import Call, Operation

FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 16
REALM = 'Basic realm="keystile"'
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An error answered as RFC 6749 section 5.2 JSON."""

    def __init__(self, error: str, description: str, status: int = 400, *, basic: bool = False) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic = basic

    def response(self) -> Response:
        headers = dict(NO_STORE)
        if self.status == 401 and self.basic:
            headers["WWW-Authenticate"] = REALM
        body = {"error": self.error, "error_description": self.description}
        return Response(encode_json(body), self.status, media_type="application/json", headers=headers)


async def _form(call: Call) -> dict[str, str]:
    """The form body: one value per name (a repeated name, another media type or bad encoding: invalid_request)."""
    content_type = call.request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"send the request as {FORM}")
    raw = await read_body(call.request.receive, call.runtime.max_body)
    try:
        text = raw.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form does not decode (or has too many fields)") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"the parameter {name[:64]!r} is given twice")
        if "\x00" in value:
            raise OAuthError("invalid_request", f"the parameter {name[:64]!r} holds a NUL character")
        form[name] = value
    return form


def _basic(call: Call) -> tuple[str, str] | None:
    """``client_secret_basic`` credentials (RFC 6749 section 2.3.1: each form-url-encoded), if sent."""
    values = call.request.headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise OAuthError("invalid_request", "more than one Authorization header")
    scheme, _, encoded = values[0].strip().partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "authenticate the client with HTTP Basic or in the form", 401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_client", "the Basic credentials do not decode", 401, basic=True) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_client", "the Basic credentials do not decode", 401, basic=True)
    return unquote_plus(client_id), unquote_plus(secret)


def _too_many_failures(wait_ms: float) -> RateLimited:
    return RateLimited(
        "too many failed attempts from this address; retry later",
        code="too_many_failures",
        retry_after=whole_seconds(wait_ms),
    )


async def oauth_token(call: Call) -> Response:
    try:
        return await _token(call)
    except OAuthError as exc:
        return exc.response()


async def _token(call: Call) -> Response:
    scope = call.request.scope
    ip = call.runtime.proxies.client(scope)
    basic = _basic(call)
    form = await _form(call)
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is missing")
    if basic is not None:
        if "client_secret" in form:
            raise OAuthError("invalid_request", "authenticate the client one way only: HTTP Basic or the form")
        if form.get("client_id", basic[0]) != basic[0]:
            raise OAuthError("invalid_request", "client_id differs from the one of the Basic credentials")
        client_id, secret = basic
    else:
        found_id, found_secret = form.get("client_id"), form.get("client_secret")
        if not found_id or not found_secret:
            raise OAuthError("invalid_client", "no client credentials: send client_id and client_secret", 401)
        client_id, secret = found_id, found_secret
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "only the client_credentials grant is supported")
    wanted = form.get("scope")
    permissions = wanted.split() if wanted and wanted.strip() else None

    limiter = call.runtime.failure_limiter()
    if limiter.enabled and (wait := limiter.blocked_for(ip)):
        raise _too_many_failures(wait)

    async def invalid_client() -> Exception:
        if limiter.enabled and (wait := await limiter.fail(ip)):
            return _too_many_failures(wait)
        return OAuthError("invalid_client", "client authentication failed", 401, basic=basic is not None)

    ks = call.ks
    key = await ks.ctx.storage.get_key(client_id) if len(client_id) <= 128 and client_id.isprintable() else None
    if key is None:
        raise await invalid_client()
    try:
        issued = await ks.tokens.issue(
            KeyCheck(secret, api_id=key.api_id, ip=ip),
            permissions=permissions,
            request_id=call.request_id,
            claims={"aud": key.api_id, "client_id": key.id},
            typ="at+jwt",
        )
    except InvalidInput as exc:
        if exc.code == "invalid_scope":
            raise OAuthError("invalid_scope", "scope must be permission names separated by spaces") from None
        raise
    result, token = issued.result, issued.token
    if token is not None and result.entry is not None and result.entry.key.id == key.id:
        out = OAuthTokenOut(token.token, "Bearer", token.expires_in, " ".join(token.scope))
        return Response(encode_json(out), 200, media_type="application/json", headers=NO_STORE)
    if token is not None:  # another key of the same API: not this client's secret
        raise await invalid_client()
    if result.code == Code.INSUFFICIENT_PERMISSIONS:
        raise OAuthError("invalid_scope", "the key does not hold every permission asked for")
    if result.code in (Code.RATE_LIMITED, Code.USAGE_EXCEEDED):
        states = result.spent.ratelimits if result.spent is not None else ()
        retry_after = retry_after_s(result.code, result.entry, states, ks.ctx.clock.now() * 1000)
        raise refusal(result.code, retry_after)
    raise await invalid_client()


async def oauth_introspect(call: Call) -> Response:
    try:
        form = await _form(call)
    except OAuthError as exc:
        return exc.response()
    token = form.get("token")
    if not token:
        return OAuthError("invalid_request", "token is missing").response()
    checked = await call.ks.tokens.verify(call.actor.principal, token[:65536])
    claims = checked.claims
    if not checked.valid or claims is None:
        out = OAuthIntrospection(active=False)
    else:
        out = OAuthIntrospection(
            active=True,
            scope=_text(claims.get("scope")),
            client_id=_text(claims.get("client_id")) or _text(claims.get("key_id")),
            sub=_text(claims.get("sub")),
            exp=claims.get("exp"),
            iat=claims.get("iat"),
            iss=_text(claims.get("iss")),
            aud=_text(claims.get("aud")),
            jti=_text(claims.get("jti")),
            token_type="Bearer",  # noqa: S106 (a token type, not a password)
        )
    return Response(encode_json(out), 200, media_type="application/json", headers=NO_STORE)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def oauth_metadata(call: Call) -> Response:
    issuer = call.ks.tokens.issuer
    base = issuer if issuer.startswith(("https://", "http://")) else str(call.request.base_url)
    base = base.rstrip("/")
    out = OAuthMetadata(
        issuer=issuer,
        token_endpoint=f"{base}{OAUTH_TOKEN.path}",
        jwks_uri=f"{base}/.well-known/jwks.json",
        introspection_endpoint=f"{base}{OAUTH_INTROSPECT.path}",
        grant_types_supported=["client_credentials"],
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
        introspection_endpoint_auth_methods_supported=["bearer"],
        response_types_supported=[],
        scopes_supported=[],
    )
    return call.json(out)


def _json(
    description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None, shown: Any = None
) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if shown is not None:
        media["examples"] = {"example": {"value": example(shown)}}
    answer: dict[str, Any] = {"description": description, "content": {"application/json": media}}
    if headers:
        answer["headers"] = headers
    return answer


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


_STR = {"type": "string"}
_INT = {"type": "integer"}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": _STR, "error_description": _STR},
}
_TOKEN = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "scope"],
    "properties": {
        "access_token": _STR,
        "token_type": {"enum": ["Bearer"]},
        "expires_in": _INT,
        "scope": _STR,
    },
}
_INTROSPECTION = {
    "type": "object",
    "required": ["active"],
    "properties": {
        "active": {"type": "boolean"},
        **dict.fromkeys(("scope", "client_id", "sub", "iss", "aud", "jti", "token_type"), _STR),
        "exp": _INT,
        "iat": _INT,
    },
}
TOKEN_RESPONSES = {
    "200": _json("An access token (RFC 6749 section 5.1).", _TOKEN, shown=OAuthTokenOut),
    "400": _json("`invalid_request`, `invalid_scope` or `unsupported_grant_type` (RFC 6749 section 5.2).", _ERROR),
    "401": _json("`invalid_client`: client authentication failed.", _ERROR, {"WWW-Authenticate": {"schema": _STR}}),
    "429": _problem("The key is rate limited or out of credits, or too many failed attempts came from this address."),
    "503": _problem("Storage is unreachable, or the master key that encrypts the signing keys is missing."),
    "default": _problem("Any other error (a body over the size limit: 413)."),
}
INTROSPECT_RESPONSES = {
    "200": _json(
        "What the token is (RFC 7662): `{active: false}` for anything not valid.",
        _INTROSPECTION,
        shown=OAuthIntrospection,
    ),
    "400": _json("`invalid_request`: not a form, or no `token`.", _ERROR),
    "401": _problem("No root key, or an invalid one."),
    "403": _problem("The root key lacks `keys.verify`."),
    "default": _problem("Any other error."),
}

TAG = "OAuth 2.0"
OPERATIONS = [
    Operation(
        OAUTH_TOKEN,
        oauth_token,
        "OAuth 2.0 token endpoint: the client credentials grant, with a key as the client secret",
        TAG,
        responses=TOKEN_RESPONSES,
        description=(
            "Form-encoded (RFC 6749 section 4.4): `grant_type=client_credentials`, the key's id as `client_id` "
            "and the key as `client_secret`, by HTTP Basic (`client_secret_basic`) or in the form "
            "(`client_secret_post`); `scope` narrows the token to permissions the key holds. Issuing is a "
            "verification of the key. The access token is a JWT (RFC 9068: `typ: at+jwt`, `aud` = the API id, "
            "`client_id` = the key id, with the claims of `POST /v1/tokens`); it expires after 15 minutes. Errors "
            "are RFC 6749 JSON: 401 `invalid_client` (a wrong, unknown, revoked, disabled or expired key, or one "
            "that is not `client_id`'s), 400 `invalid_scope`, `unsupported_grant_type`, `invalid_request`. A rate "
            "limited key or one without credits is answered 429. Failed attempts count toward the per-address "
            "limit of `/v1/auth`. See docs/tokens.md."
        ),
    ),
    Operation(
        OAUTH_INTROSPECT,
        oauth_introspect,
        "OAuth 2.0 token introspection (RFC 7662)",
        TAG,
        "keys.verify",
        responses=INTROSPECT_RESPONSES,
        description=(
            "Form-encoded `token=...`. Answers `{active: true, scope, client_id, sub, exp, iat, iss, aud, jti, "
            "token_type}` for a valid token, `{active: false}` for anything else (expired, its key revoked, "
            "disabled or expired, forged, or of an API this root key may not verify)."
        ),
    ),
    Operation(
        OAUTH_METADATA,
        oauth_metadata,
        "OAuth 2.0 authorization server metadata (RFC 8414)",
        TAG,
        errors=(),
        description="The token, introspection and JWKS endpoints and what the token endpoint supports.",
    ),
]

"""API tokens (SPEC T1, T2): issue a token from a key, check one online, publish the public keys (JWKS).

A key that fails to get a token (401: unknown, revoked, disabled, expired) counts toward the per-address failure
limit shared with ``/v1/auth`` and ``/oauth/token`` (:meth:`Runtime.failure_limiter`): a blocked address is
answered 429 ``too_many_failures`` before its key is looked at.
"""

from __future__ import annotations

from starlette.responses import Response

from keystile.core.verify import Code, KeyCheck
from keystile.errors import Forbidden, Unauthenticated
from keystile.http.answers import STATUS, retry_after_s
from keystile.http.asgi import encode_json, read_body
from keystile.http.credentials import extract_key
from keystile.http.failures import too_many_failures
from keystile.http.refusals import refusal
from keystile.operations import ISSUE_TOKEN, JWKS, VERIFY_TOKEN
from keystile.schemas import TokenRequest, TokenVerifyRequest, TokenVerifyResponse, decode, token_out
from keystile.server.routing import Call, Operation

JWKS_CACHE_CONTROL = "public, max-age=300"
"""Five minutes: a new signing key signs at once, and verifiers fetch the set again on an unknown ``kid``."""


async def issue_token(call: Call) -> Response:
    scope = call.request.scope
    # The key comes in a header only: a token endpoint has no business with keys in URLs (they end up in logs).
    ip = call.runtime.proxies.client(scope)
    limiter = call.runtime.failure_limiter()
    if limiter.enabled and (wait := limiter.blocked_for(ip)):
        raise too_many_failures(wait)
    try:
        found = extract_key(scope["headers"])
    except Unauthenticated:  # two different keys
        if limiter.enabled and (wait := await limiter.fail(ip)):
            raise too_many_failures(wait) from None
        raise
    if found is None:
        raise refusal("missing_key")
    raw = await read_body(call.request.receive, call.runtime.max_body)
    body = decode(raw, TokenRequest) if raw.strip() else TokenRequest()  # no body: the defaults
    ks = call.ks
    issued = await ks.tokens.issue(
        KeyCheck(found[0], ip=ip),
        ttl_s=body.ttl_s,
        permissions=body.permissions,
        request_id=call.request_id,
    )
    token = issued.token
    if token is None:
        result = issued.result
        if result.code == Code.INSUFFICIENT_PERMISSIONS:
            raise Forbidden("the key does not hold every permission asked for", code="invalid_scope")
        retry_after = None
        if result.code in (Code.RATE_LIMITED, Code.USAGE_EXCEEDED):
            states = result.spent.ratelimits if result.spent is not None else ()
            retry_after = retry_after_s(result.code, result.entry, states, ks.ctx.clock.now() * 1000)
        if STATUS[result.code] == 401 and limiter.enabled and (wait := await limiter.fail(ip)):
            raise too_many_failures(wait)
        raise refusal(result.code, retry_after)
    out = token_out(token.token, token.expires_in, token.expires_at, " ".join(token.scope))
    return Response(encode_json(out), 200, media_type="application/json", headers={"Cache-Control": "no-store"})


async def verify_token(call: Call) -> Response:
    body = await call.body(TokenVerifyRequest)
    checked = await call.ks.tokens.verify(call.actor.principal, body.token)
    claims = checked.claims
    if claims is None:
        return call.json(TokenVerifyResponse(valid=False, code=checked.code))  # type: ignore[arg-type]
    return call.json(
        TokenVerifyResponse(
            valid=checked.valid,
            code=checked.code,  # type: ignore[arg-type]
            key_id=claims["key_id"],
            api_id=claims["api_id"],
            sub=_text(claims.get("sub")),
            scope=_text(claims.get("scope")),
            exp=claims["exp"],
            expires_at=_rfc3339(claims["exp"]),
            iat=claims["iat"],
            jti=_text(claims.get("jti")),
            kid=checked.kid,
        )
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _rfc3339(seconds: int) -> str | None:
    from keystile.core.timefmt import to_rfc3339

    try:
        return to_rfc3339(seconds * 1000)
    except (ValueError, OverflowError):
        return None


async def jwks(call: Call) -> Response:
    keys = await call.ks.tokens.jwks()
    return Response(
        encode_json(keys), 200, media_type="application/json", headers={"Cache-Control": JWKS_CACHE_CONTROL}
    )


TAG = "Tokens"
OPERATIONS = [
    Operation(
        ISSUE_TOKEN,
        issue_token,
        "Issue a short-lived signed token (an EdDSA JWT) from a key",
        TAG,
        errors=(400, 503),
        description=(
            "No root key: the caller presents its own key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`. "
            "Issuing is a verification of that key (its IP allowlist, rate limits and credits apply, and the event "
            "is tagged `token`); a key that does not verify gets no token: 401 `invalid_key` (unknown, revoked, "
            "disabled, expired or another API's key alike), 403 `ip_not_allowed`, 429 `rate_limited` or "
            "`usage_exceeded`; refused keys count toward the per-address failure limit shared with `/v1/auth` "
            "(429 `too_many_failures` past it). `permissions` narrows the token's `scope` to permissions the key "
            "holds (403 `invalid_scope` otherwise, nothing spent); by default the scope is every permission the "
            "key holds. "
            "The token carries `iss`, `sub` (the key's owner id, else its id), `key_id`, `api_id`, `scope`, `iat`, "
            "`exp` and `jti`, and its header the `kid` of the signing key in `/.well-known/jwks.json`. It expires "
            "after `ttl_s` seconds, or when the key does if that is sooner. Without the master key, which "
            "encrypts the signing keys, the answer is 503 `master_key_unavailable`. See docs/tokens.md."
        ),
    ),
    Operation(
        VERIFY_TOKEN,
        verify_token,
        "Check a token online: signature, times, issuer, and that its key is still valid",
        TAG,
        "keys.verify",
        errors=(400, 401, 403),
        description=(
            "Answers `valid` and `code` whatever the token: `VALID`; `EXPIRED` (the token or its key expired); "
            "`REVOKED` (the key that issued it was revoked or deleted); `DISABLED` (the key is disabled); "
            "`NOT_FOUND` for anything else (malformed, a bad signature, a signing key no longer published, another "
            "issuer, or a key of an API this root key may not verify). Spends no rate limits or credits."
        ),
    ),
    Operation(
        JWKS,
        jwks,
        "The public keys that sign tokens (a JSON Web Key Set)",
        TAG,
        errors=(),
        description=(
            "Ed25519 keys (`kty: OKP`, `alg: EdDSA`) by `kid`: the current signing key and, after a rotation, "
            "the previous ones until the last token they signed has expired. No root key needed; cacheable for "
            "five minutes (fetch it again when a token names an unknown `kid`)."
        ),
    ),
]

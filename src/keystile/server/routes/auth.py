"""``/v1/auth``, forward auth (SPEC V5), declared for the OpenAPI document: :mod:`keystile.server.forward_auth`
serves it (for any method) before routing."""

from __future__ import annotations

from starlette.responses import Response

from keystile.server.routing import Call, Operation, Param


async def forward_auth(call: Call) -> Response:  # pragma: no cover - the fast path answers before routing
    raise AssertionError("/v1/auth is served by keystile.server.forward_auth")


OPERATIONS = [
    Operation(
        "GET",
        "/v1/auth",
        forward_auth,
        "Forward auth for nginx auth_request, Traefik, Caddy and Envoy (any method; no body, answers in headers)",
        "Verification",
        query=(
            Param("api_id", "string", "The API whose keys may pass (required unless KEYSTILE_AUTH_API_IDS names one)."),
            Param("permissions", "string", "A permission query the key must satisfy, e.g. `docs.read`."),
            Param("cost", "integer", "Credits to spend (default 1)."),
        ),
        errors=(),
        description=(
            "The key is read from the original request: `Authorization: Bearer`, `X-API-Key`, or `api_key` in "
            "`X-Original-URI`/`X-Forwarded-Uri`. 200 for VALID with `X-Keystile-Key-Id`, `X-Keystile-Owner-Id`, "
            "`X-Keystile-Api-Id` and `RateLimit-Limit/-Remaining/-Reset`; 401 with `WWW-Authenticate: Bearer` for "
            "a missing, unknown, revoked, disabled or expired key; 403 for FORBIDDEN and INSUFFICIENT_PERMISSIONS; "
            "429 with `Retry-After` for RATE_LIMITED, USAGE_EXCEEDED and too many failed attempts (403 with "
            "KEYSTILE_AUTH_LIMITED_STATUS=403); 400 for a bad option. Every answer is empty and carries its "
            "reason in `X-Keystile-Code`. See docs/forward-auth.md."
        ),
    ),
]

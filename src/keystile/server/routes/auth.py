"""``/v1/auth``, forward auth (SPEC V5), declared for the OpenAPI document: :mod:`keystile.server.forward_auth`
serves it (for any method) before routing."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from keystile.operations import FORWARD_AUTH
from keystile.server.examples import API_ID, KEY_ID
from keystile.server.routing import Call, Operation


async def forward_auth(call: Call) -> Response:  # pragma: no cover - the fast path answers before routing
    raise AssertionError("/v1/auth is served by keystile.server.forward_auth")


def _header(description: str, example: str | int, *, required: bool = False, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": kind}, "example": example}


_CODE = "Why: `VALID`, another verification code (`REVOKED`...) or a problem code (`missing_key`, `invalid_option`...)."
_RATELIMIT = {
    "RateLimit-Limit": _header("The tightest rate limit of the key (when it has one).", 100, kind="integer"),
    "RateLimit-Remaining": _header("Requests left in it.", 98, kind="integer"),
    "RateLimit-Reset": _header("Seconds until it is full again.", 2, kind="integer"),
}
_RETRY_AFTER = _header("Seconds to wait before asking again.", 2, kind="integer")


def _empty(description: str, code: str, headers: dict[str, Any]) -> dict[str, Any]:
    """An answer with no `content`: every answer of /v1/auth is empty (Content-Length: 0), its meaning is in the
    status and headers; ``code`` is the example of its ``X-Keystile-Code``."""
    return {"description": description, "headers": {"X-Keystile-Code": _header(_CODE, code, required=True), **headers}}


RESPONSES = {
    "200": _empty(
        "The key is VALID.",
        "VALID",
        {
            "X-Keystile-Key-Id": _header("The key's id.", KEY_ID, required=True),
            "X-Keystile-Api-Id": _header("The key's API.", API_ID, required=True),
            "X-Keystile-Owner-Id": _header(
                "The key's owner id, percent-encoded beyond printable ASCII; empty without an owner.",
                "alice",
                required=True,
            ),
            "X-Keystile-Token": _header("`true` when the request came with an API token rather than a key.", "true"),
            **_RATELIMIT,
        },
    ),
    "400": _empty(
        "A bad option: `missing_api_id`, `api_not_allowed`, `invalid_option`, a permission query that does not parse.",
        "invalid_option",
        {},
    ),
    "431": _empty(
        "The request's headers add up to more than the size limit (`headers_too_large`).", "headers_too_large", {}
    ),
    "401": _empty(
        "No key (`missing_key`), two different keys (`ambiguous_credentials`), or NOT_FOUND, REVOKED, DISABLED, "
        "EXPIRED.",
        "REVOKED",
        {"WWW-Authenticate": _header("`Bearer`.", "Bearer", required=True)},
    ),
    "403": _empty(
        "FORBIDDEN or INSUFFICIENT_PERMISSIONS; also what 429 says when KEYSTILE_AUTH_LIMITED_STATUS=403.",
        "INSUFFICIENT_PERMISSIONS",
        {"Retry-After": _RETRY_AFTER, **_RATELIMIT},
    ),
    "429": _empty(
        "RATE_LIMITED, USAGE_EXCEEDED, or too many failed attempts from the client's address (`too_many_failures`).",
        "RATE_LIMITED",
        {"Retry-After": {**_RETRY_AFTER, "required": True}, **_RATELIMIT},
    ),
    "500": _empty("A server fault (`internal_error`).", "internal_error", {}),
    "503": _empty("Storage is unreachable, or the server is starting.", "storage_unavailable", {}),
}
"""The answers of /v1/auth, documented as they are: a status and headers, never a body."""

OPERATIONS = [
    Operation(
        FORWARD_AUTH,
        forward_auth,
        "Forward auth for nginx auth_request, Traefik, Caddy and Envoy (any method; no body, answers in headers)",
        "Verification",
        responses=RESPONSES,
        description=(
            "The key is read from the original request: `Authorization: Bearer`, `X-API-Key`, or `api_key` in "
            "`X-Original-URI`/`X-Forwarded-Uri`. 200 for VALID with `X-Keystile-Key-Id`, `X-Keystile-Owner-Id`, "
            "`X-Keystile-Api-Id` and `RateLimit-Limit/-Remaining/-Reset`; 401 with `WWW-Authenticate: Bearer` for "
            "a missing, unknown, revoked, disabled or expired key; 403 for FORBIDDEN and INSUFFICIENT_PERMISSIONS; "
            "429 with `Retry-After` for RATE_LIMITED, USAGE_EXCEEDED and too many failed attempts (403 with "
            "KEYSTILE_AUTH_LIMITED_STATUS=403); 400 for a bad option. Every answer is empty and carries its "
            "reason in `X-Keystile-Code`. An API token passes where its key would (checked against this server's "
            "signing keys and its key's state), with `X-Keystile-Token: true`. See docs/forward-auth.md."
        ),
    ),
]

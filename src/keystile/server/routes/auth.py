"""``/v1/auth``, forward auth (SPEC V5), declared for the OpenAPI document: :mod:`keystile.server.forward_auth`
serves it (for any method) before routing."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from keystile.operations import FORWARD_AUTH
from keystile.server.routing import Call, Operation


async def forward_auth(call: Call) -> Response:  # pragma: no cover - the fast path answers before routing
    raise AssertionError("/v1/auth is served by keystile.server.forward_auth")


def _header(description: str, *, required: bool = False, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": kind}}


_CODE = _header(
    "Why: `VALID`, another verification code (`REVOKED`...) or a problem code (`missing_key`, `invalid_option`...).",
    required=True,
)
_RATELIMIT = {
    "RateLimit-Limit": _header("The tightest rate limit of the key (when it has one).", kind="integer"),
    "RateLimit-Remaining": _header("Requests left in it.", kind="integer"),
    "RateLimit-Reset": _header("Seconds until it is full again.", kind="integer"),
}
_RETRY_AFTER = _header("Seconds to wait before asking again.", kind="integer")


def _empty(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    # No `content`: every answer of /v1/auth is empty (Content-Length: 0), its meaning is in the status and headers.
    return {"description": description, "headers": {"X-Keystile-Code": _CODE, **headers}}


RESPONSES = {
    "200": _empty(
        "The key is VALID.",
        {
            "X-Keystile-Key-Id": _header("The key's id.", required=True),
            "X-Keystile-Api-Id": _header("The key's API.", required=True),
            "X-Keystile-Owner-Id": _header(
                "The key's owner id, percent-encoded beyond printable ASCII; empty without an owner.", required=True
            ),
            **_RATELIMIT,
        },
    ),
    "400": _empty(
        "A bad option: `missing_api_id`, `api_not_allowed`, `invalid_option`, a permission query that does not parse.",
        {},
    ),
    "431": _empty("The request's headers add up to more than the size limit (`headers_too_large`).", {}),
    "401": _empty(
        "No key (`missing_key`), two different keys (`ambiguous_credentials`), or NOT_FOUND, REVOKED, DISABLED, "
        "EXPIRED.",
        {"WWW-Authenticate": _header("`Bearer`.", required=True)},
    ),
    "403": _empty(
        "FORBIDDEN or INSUFFICIENT_PERMISSIONS; also what 429 says when KEYSTILE_AUTH_LIMITED_STATUS=403.",
        {"Retry-After": _RETRY_AFTER, **_RATELIMIT},
    ),
    "429": _empty(
        "RATE_LIMITED, USAGE_EXCEEDED, or too many failed attempts from the client's address (`too_many_failures`).",
        {"Retry-After": {**_RETRY_AFTER, "required": True}, **_RATELIMIT},
    ),
    "500": _empty("A server fault (`internal_error`).", {}),
    "503": _empty("Storage is unreachable, or the server is starting.", {}),
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
            "reason in `X-Keystile-Code`. See docs/forward-auth.md."
        ),
    ),
]

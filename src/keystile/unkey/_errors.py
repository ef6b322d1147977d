"""Errors as Unkey's v2 API answers them: ``{meta: {requestId}, error: {title, detail, status, type}}``, where
``type`` is the URL of Unkey's page for the error, and 400s add ``errors: [{location, message}]``.

The statuses are Unkey's: a missing or malformed root key is a 400 there (a root key that is unknown is the
401), a root key without the permission is a 403, and conflicts with a key's state are 412s. An unexpected
exception is a 500 that says nothing about it (details go to the server log only, as for /v1).
"""

from __future__ import annotations

import logging
from typing import Any

from keystile.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KeystileError,
    MasterKeyUnavailable,
    NotFound,
    QuerySyntaxError,
    RateLimited,
    StorageError,
    TooLarge,
    Unauthenticated,
)

log = logging.getLogger("keystile.server")

DOCS = "https://unkey.com/docs/errors/"
ROUTE_NOT_FOUND_TYPE = "https://keystile.dev/problems/route_not_found"
"""Unkey's own server answers an unknown route without a body of its own; Keystile answers Unkey's shape, with
a type of its own (there is no Unkey page for it)."""

# Keystile's codes whose Unkey type is more precise than their class's.
_NOT_FOUND_TYPES = {
    "key_not_found": "unkey/data/key_not_found",
    "api_not_found": "unkey/data/api_not_found",
    "identity_not_found": "unkey/data/identity_not_found",
    "role_not_found": "unkey/data/role_not_found",
    "unknown_role": "unkey/data/role_not_found",
}
_CONFLICT_TYPES = {"identity_exists": "unkey/data/identity_already_exists"}
# Conflicts with the state of a key answer 400 as Unkey does where it refuses the same request.
_INVALID_CONFLICTS = frozenset({"credits_unlimited"})


class UnkeyError(Exception):
    """An answer in Unkey's error shape, raised by the translation itself (an unknown route, an operation this
    deployment does not offer yet)."""

    def __init__(self, status: int, title: str, type_: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.type = type_
        self.detail = detail


def error_body(exc: BaseException, request_id: str, not_found: str = "unkey/data/key_not_found") -> tuple[int, Any]:
    """The status and body answering ``exc``. ``not_found`` is the type of a 404 whose code does not say what
    was not found (a root key scoped to other APIs: the object of the operation)."""
    if isinstance(exc, UnkeyError):
        body = _body(request_id, exc.status, exc.title, exc.type, exc.detail)
        if exc.status == 400:
            body["error"]["errors"] = []
        return exc.status, body
    if not isinstance(exc, KeystileError) or type(exc) is KeystileError:
        log.error("unhandled error in request %s", request_id, exc_info=exc, extra={"request_id": request_id})
        detail = "the server failed to handle this request; the request id helps its operators find out why"
        return 500, _body(request_id, 500, "Internal Server Error", DOCS + "unkey/application/unexpected_error", detail)
    status, title, kind = _classify(exc, not_found)
    body = _body(request_id, status, title, DOCS + kind, exc.detail)
    if status == 400 or status == 413:
        field = exc.extra.get("field")
        errors = [{"location": _location(field), "message": exc.detail}] if isinstance(field, str) else []
        body["error"]["errors"] = errors
    return status, body


def _classify(exc: KeystileError, not_found: str) -> tuple[int, str, str]:
    code = exc.code
    if isinstance(exc, QuerySyntaxError):
        return 400, "Bad Request", "user/bad_request/permissions_query_syntax_error"
    if isinstance(exc, Unauthenticated):
        if code == "missing_root_key":
            return 400, "Bad Request", "unkey/authentication/missing"
        return 401, "Unauthorized", "unkey/authentication/key_not_found"
    if isinstance(exc, Forbidden):
        return 403, "Insufficient Permissions", "unkey/authorization/insufficient_permissions"
    if isinstance(exc, NotFound):
        return 404, "Not Found", _NOT_FOUND_TYPES.get(code, not_found)
    if isinstance(exc, InvalidInput) and code == "unknown_role":
        return 404, "Not Found", _NOT_FOUND_TYPES[code]
    if code == "body_timeout":
        return 408, "Request Timeout", "user/bad_request/request_timeout"
    if isinstance(exc, TooLarge):
        return 413, "Request Entity Too Large", "user/bad_request/request_body_too_large"
    if isinstance(exc, InvalidInput) or (isinstance(exc, Conflict) and code in _INVALID_CONFLICTS):
        return 400, "Bad Request", "unkey/application/invalid_input"
    if isinstance(exc, Conflict):
        kind = _CONFLICT_TYPES.get(code)
        if kind is not None:
            return 409, "Conflicting Resource", kind
        return 412, "Precondition Failed", "unkey/application/precondition_failed"
    if isinstance(exc, RateLimited):
        return 429, "Too Many Requests", "user/too_many_requests/workspace_rate_limited"
    if isinstance(exc, (StorageError, MasterKeyUnavailable)):
        return 503, "Service Unavailable", "unkey/application/service_unavailable"
    return 500, "Internal Server Error", "unkey/application/unexpected_error"


def _body(request_id: str, status: int, title: str, type_: str, detail: str) -> dict[str, Any]:
    return {
        "meta": {"requestId": request_id},
        "error": {"title": title, "detail": detail, "status": status, "type": type_},
    }


# The services name fields as Keystile's own API does; these are their names in Unkey's bodies.
_UNKEY_NAMES = {
    "owner_id": "externalId",
    "expires_at": "expires",
    "day": "refillDay",
    "duration_ms": "duration",
    "auto_apply": "autoApply",
}


def _location(pointer: str) -> str:
    """A JSON pointer (``/credits/refill/day``) as Unkey names places (``body.credits.refill.refillDay``)."""
    parts = [part for part in pointer.split("/") if part]
    text = "body"
    for part in parts:
        text += f"[{part}]" if part.isdigit() else f".{_UNKEY_NAMES.get(part, part)}"
    return text

"""Errors as RFC 9457 ``application/problem+json`` (SPEC S4): the one place where error classes get statuses.

Every error answer carries ``type``, ``title``, ``status``, ``detail``, a stable ``code`` and the ``request_id``,
plus ``field`` / ``position`` / ``index`` when the error names them. An unexpected exception becomes a 500
whose body says nothing about it (the details go to the server log only).
"""

from __future__ import annotations

import logging

from keystile.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KeystileError,
    MasterKeyUnavailable,
    NotFound,
    RateLimited,
    StorageError,
    TooLarge,
    Unauthenticated,
)
from keystile.http.asgi import PROBLEM_JSON, Send, encode_json, send_bytes
from keystile.schemas import Problem

log = logging.getLogger("keystile.server")

TYPE_BASE = "https://keystile.dev/problems/"
# Order matters: the first class an error is an instance of decides its status.
_STATUSES: tuple[tuple[type[KeystileError], int], ...] = (
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (RateLimited, 429),
    (MasterKeyUnavailable, 503),
    (StorageError, 503),
)
# Codes whose status is more precise than their class's.
_CODE_STATUSES = {
    "body_timeout": 408,
    "headers_too_large": 431,
    "unsupported_media_type": 415,
    "method_not_allowed": 405,
    # keystile proxy's upstream (a gateway's answers: RFC 9110 15.6.3, 15.6.5)
    "upstream_unavailable": 502,
    "upstream_timeout": 504,
}
_TITLES = {
    405: "Method not allowed",
    408: "Request timeout",
    415: "Unsupported media type",
    431: "Request headers too large",
    502: "Bad gateway",
    504: "Gateway timeout",
}
# 401s that carry no credentials at all: their challenge names no error (RFC 6750, section 3.1).
_NO_CREDENTIALS = frozenset({"missing_root_key", "missing_key"})
_EXTRA_FIELDS = {"field": str, "position": int, "index": int}

Headers = list[tuple[bytes, bytes]]


def status_of(exc: KeystileError) -> int:
    """The HTTP status of an error Keystile raised on purpose (500 for the root class itself)."""
    status = _CODE_STATUSES.get(exc.code)
    if status is not None:
        return status
    for cls, status in _STATUSES:
        if isinstance(exc, cls):
            return status
    return 500


def problem_of(exc: KeystileError, request_id: str | None) -> tuple[int, Problem, Headers]:
    """The status, problem body and extra headers answering ``exc``."""
    status = status_of(exc)
    if status == 500:
        return internal_problem(request_id)
    extra = {name: exc.extra[name] for name, kind in _EXTRA_FIELDS.items() if isinstance(exc.extra.get(name), kind)}
    problem = Problem(
        type=TYPE_BASE + exc.code,
        title=_TITLES.get(status, exc.title),
        status=status,
        detail=exc.detail,
        code=exc.code,
        request_id=request_id,
        **extra,
    )
    headers: Headers = []
    if status == 401:
        challenge = b"Bearer" if exc.code in _NO_CREDENTIALS else b'Bearer error="invalid_token"'
        headers.append((b"www-authenticate", challenge))
    if status == 408:
        # The rest of the body may still come: it must not be read as the next request on this connection.
        headers.append((b"connection", b"close"))
    retry_after = exc.extra.get("retry_after")
    if status == 429 and isinstance(retry_after, int):
        headers.append((b"retry-after", b"%d" % retry_after))
    return status, problem, headers


def internal_problem(request_id: str | None) -> tuple[int, Problem, Headers]:
    """The answer to a fault: deliberately nothing about what went wrong."""
    problem = Problem(
        type=TYPE_BASE + "internal_error",
        title="Internal error",
        status=500,
        detail="the server failed to handle this request; the request id helps its operators find out why",
        code="internal_error",
        request_id=request_id,
    )
    return 500, problem, []


def problem_for_exception(exc: BaseException, request_id: str | None) -> tuple[int, Problem, Headers]:
    """Like :func:`problem_of` for any exception; unexpected ones are logged with their traceback."""
    if isinstance(exc, KeystileError):
        status, problem, headers = problem_of(exc, request_id)
        if status != 500:
            return status, problem, headers
    log.error("unhandled error in request %s", request_id, exc_info=exc, extra={"request_id": request_id})
    return internal_problem(request_id)


def encode_problem(problem: Problem) -> bytes:
    return encode_json(problem)


async def send_problem(send: Send, exc: BaseException, request_id: str | None, extra: Headers | None = None) -> None:
    """Answer ``exc`` as a problem over raw ASGI (``x-request-id`` and ``extra`` headers included)."""
    status, problem, headers = problem_for_exception(exc, request_id)
    if extra:
        headers.extend(extra)
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send_bytes(send, status, PROBLEM_JSON, encode_problem(problem), headers)

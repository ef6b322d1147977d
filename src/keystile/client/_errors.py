"""What the client raises: one branch of Keystile's error tree, so ``except keystile.NotFound`` works whether a
call went through the HTTP API or straight to the services.

::

    KeystileError
    ├── ApiError                 the server answered with a problem (status, code, detail, request_id, ...)
    │   ├── BadRequest           400, 405, 415    (also an InvalidInput)
    │   ├── AuthenticationFailed 401              (also an Unauthenticated)
    │   ├── PermissionDenied     403              (also a Forbidden)
    │   ├── NotFoundError        404              (also a NotFound)
    │   ├── ConflictError        409              (also a Conflict)
    │   ├── PayloadTooLarge      413, 431         (also a TooLarge)
    │   ├── TooManyRequests      429              (also a RateLimited; ``retry_after`` from the header)
    │   └── ServerError          5xx
    │       └── ServiceUnavailable 503            (also a StorageError)
    └── TransportError           no answer at all: refused, reset, timed out (httpx's exception is the cause)
"""

from __future__ import annotations

from keystile.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KeystileError,
    NotFound,
    RateLimited,
    StorageError,
    TooLarge,
    Unauthenticated,
)
from keystile.schemas import Problem


class ApiError(KeystileError):
    """The server refused the request with an RFC 9457 problem; its fields are attributes of the error."""

    def __init__(self, problem: Problem, *, retry_after: int | None = None) -> None:
        extra = {
            name: value
            for name, value in (("field", problem.field), ("position", problem.position), ("index", problem.index))
            if value is not None
        }
        super().__init__(problem.detail, code=problem.code, **extra)
        self.problem = problem
        self.status = problem.status
        self.title = problem.title
        self.type = problem.type
        self.request_id = problem.request_id
        self.field = problem.field
        self.position = problem.position
        self.index = problem.index
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail} (request {self.request_id})"


class BadRequest(ApiError, InvalidInput):
    """400 (and 405, 415): the server could not accept the request; ``field`` / ``position`` / ``index`` say where."""


class AuthenticationFailed(ApiError, Unauthenticated):
    """401: no root key, or one that is unknown, revoked or expired."""


class PermissionDenied(ApiError, Forbidden):
    """403: the root key lacks the permission for every API."""


class NotFoundError(ApiError, NotFound):
    """404: no such object, or one the root key may not see."""


class ConflictError(ApiError, Conflict):
    """409: the request clashes with the current state."""


class PayloadTooLarge(ApiError, TooLarge):
    """413 or 431: a body or the headers over the server's limit."""


class TooManyRequests(ApiError, RateLimited):
    """429: come back after ``retry_after`` seconds (``None`` when the server did not say)."""


class ServerError(ApiError):
    """A 5xx answer: the request id helps the server's operators find out why."""


class ServiceUnavailable(ServerError, StorageError):
    """503: the server cannot reach its storage (or is starting)."""


class TransportError(KeystileError):
    """No answer: the connection was refused or reset, or the request timed out."""

    code = "transport_error"
    title = "No answer from the server"


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFoundError,
    405: BadRequest,
    409: ConflictError,
    413: PayloadTooLarge,
    415: BadRequest,
    429: TooManyRequests,
    431: PayloadTooLarge,
    503: ServiceUnavailable,
}


def error_class(status: int) -> type[ApiError]:
    """The exception raised for an answer with ``status``."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    return ServerError if status >= 500 else ApiError

"""Keystile's one exception tree. Every error has a stable machine-readable ``code``.

::

    KeystileError
    ├── InvalidInput            a request or argument Keystile cannot accept (400)
    │   └── QuerySyntaxError    a permission query that does not parse; carries ``position``
    ├── Unauthenticated         no root key, or one that does not verify (401)
    ├── Forbidden               a root key without the permission for any API (403)
    ├── NotFound                no such object, or one the caller may not see (404)
    ├── Conflict                the request clashes with the current state (409)
    ├── TooLarge                a body or header over its size limit (413 / 431)
    ├── RateLimited             too many requests, or no credits left (429); may carry ``retry_after``
    ├── MasterKeyUnavailable    recoverable keys cannot be sealed or opened: no master key, or not the right one (503)
    └── StorageError            the database could not be reached or failed (503)
        └── MigrationError      the schema is missing, newer than this code, or a migration failed

HTTP statuses and exit codes are assigned at the edges (``keystile.http.problems``, ``keystile.cli``), never
here. Messages are written for the user who made the request and never contain a key.
"""

from __future__ import annotations

from typing import Any


class KeystileError(Exception):
    """The root of every error Keystile raises on purpose."""

    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra: dict[str, Any] = extra


class InvalidInput(KeystileError):
    """The input is malformed or breaks a rule; ``extra`` may name the ``field`` (a JSON pointer)."""

    code = "invalid_request"
    title = "Invalid request"


class QuerySyntaxError(InvalidInput):
    """A permission query that does not parse; ``position`` is the 0-based offset of the error."""

    code = "invalid_permission_query"
    title = "Invalid permission query"

    def __init__(self, detail: str, *, position: int) -> None:
        super().__init__(detail, position=position)
        self.position = position


class Unauthenticated(KeystileError):
    """The request carries no root key, or one that is unknown, revoked, disabled or expired."""

    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(KeystileError):
    """The root key holds the needed permission for no API at all."""

    code = "insufficient_permissions"
    title = "Forbidden"


class NotFound(KeystileError):
    """No such object, or one that the caller's root key may not see (existence is not leaked)."""

    code = "not_found"
    title = "Not found"


class Conflict(KeystileError):
    """The request clashes with the current state, such as a key string that already exists."""

    code = "conflict"
    title = "Conflict"


class TooLarge(KeystileError):
    """A request body or header over its size limit."""

    code = "payload_too_large"
    title = "Too large"


class RateLimited(KeystileError):
    """Too many requests (a rate limit) or none left (credits); ``extra["retry_after"]`` is in whole seconds
    when known."""

    code = "rate_limited"
    title = "Too many requests"


class MasterKeyUnavailable(KeystileError):
    """The master key that wraps the data keys of recoverable keys (SPEC K3) is missing, unreadable, or not the one
    that wrapped them. Only sealing and opening recoverable keys fail; everything else works."""

    code = "master_key_unavailable"
    title = "Master key unavailable"


class StorageError(KeystileError):
    """The database failed or could not be reached; the driver's own exception is the ``__cause__``."""

    code = "storage_unavailable"
    title = "Storage unavailable"


class MigrationError(StorageError):
    """The schema is missing, newer than this version of Keystile, or a migration failed."""

    code = "schema_mismatch"
    title = "Schema mismatch"

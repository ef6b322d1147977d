"""Structured logs (SPEC O4): one JSON object per line, with a request id when there is one, and never a key.

Every line has ``ts`` (RFC 3339 UTC, milliseconds), ``level``, ``logger`` and ``message``; ``request_id`` when
the record carries one (``extra={"request_id": ...}``) or was emitted while a management request was served
(:data:`REQUEST_ID`); then the record's own ``extra`` fields and, for errors, ``exc`` (the traceback).

``keystile serve`` hands :func:`logging_config` to granian, which applies it in its main process and again in
each worker before the app is built, so Keystile's loggers, the libraries' and granian's own all write the same
JSON lines to stderr (stdout stays for the terminal output of ``serve``: the first root key, the address).

Management requests get one access line each (:func:`log_request`, logger ``keystile.access``): method, the
route's template as ``path`` (never the raw path: a client may put a key in it, and never the query string),
status, ``duration_ms``, ``request_id`` and the root key's id (health probes and scrapes at debug level, the
rest at info). Verifications get none: events and metrics cover
them, and a JSON line costs more than a verification (SPEC O4). Granian's own access log stays off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import msgspec

REQUEST_ID: ContextVar[str | None] = ContextVar("keystile_request_id", default=None)
"""The id of the management request being served, for the log lines emitted meanwhile."""

ROOT_KEY_ID_SCOPE_KEY = "keystile.root_key_id"
"""Where the management routes leave the authenticated root key's id in the ASGI scope, for the access line."""

ACCESS_LOGGER = "keystile.access"
LEVELS = ("debug", "info", "warning", "error")

# The attributes every LogRecord has; anything else on a record came from ``extra`` and is logged as a field.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
# Probes and scrapes come every few seconds from machines: their lines are debug, not info.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_encode = msgspec.json.Encoder(enc_hook=repr).encode

access_log = logging.getLogger(ACCESS_LOGGER)


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line (see the module docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            # Granian's Python and Rust loggers are "_granian*"; the underscore says nothing to an operator.
            "logger": record.name[1:] if record.name.startswith("_granian") else record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        request_id = fields.get("request_id") or REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name, value in fields.items():
            if name not in _RECORD_FIELDS and name not in line and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encode(line).decode()


def logging_config(level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` document: JSON lines on stderr for everything at ``level`` and above
    (granian's ``log_dictconfig``; granian sets its own logger's level from its ``log_level``).

    Raises ValueError for a level that is not one of :data:`LEVELS`.
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": level.upper()},
        "loggers": {
            "_granian": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "granian.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }


def log_request(scope: Mapping[str, Any], status: int, duration_s: float, request_id: str) -> None:
    """Write the access line of one management request: at info, but at debug for the probes and scrapes of
    :data:`QUIET_ROUTES`."""
    route = scope.get("route")
    # The template (/v1/keys/{key_id}), not the path: a key pasted into a path must not reach the log.
    path = getattr(route, "path", None)
    level = logging.DEBUG if path in QUIET_ROUTES else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    method = scope.get("method", "")
    access_log.log(
        level,
        "%s %s %d",
        method,
        path or "(no route)",
        status,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_s * 1000, 3),
            "request_id": request_id,
            "root_key_id": scope.get(ROOT_KEY_ID_SCOPE_KEY),
        },
    )

"""Keystile: a self-hosted API key service.

The public surface is small on purpose: the error tree, the settings and the HTTP clients (``Client``,
``AsyncClient``, imported on first use). The HTTP server, CLI and dashboard are built on the services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keystile._version import __version__
from keystile.config import Settings
from keystile.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KeystileError,
    MasterKeyUnavailable,
    MigrationError,
    NotFound,
    QuerySyntaxError,
    RateLimited,
    StorageError,
    TooLarge,
    Unauthenticated,
)

if TYPE_CHECKING:
    from keystile.client import AsyncClient, Client

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "KeystileError",
    "MasterKeyUnavailable",
    "MigrationError",
    "NotFound",
    "QuerySyntaxError",
    "RateLimited",
    "Settings",
    "StorageError",
    "TooLarge",
    "Unauthenticated",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The clients import httpx, which `keystile --help` and the server's hot imports need not pay for.
    if name in ("AsyncClient", "Client"):
        import keystile.client

        return getattr(keystile.client, name)
    raise AttributeError(f"module 'keystile' has no attribute {name!r}")

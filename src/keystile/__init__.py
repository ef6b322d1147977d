"""Keystile: a self-hosted API key service.

The public surface is small on purpose: the error tree, the settings, the services and the key format. The HTTP
server, CLI and dashboard are built on these.
"""

from __future__ import annotations

from keystile.config import Settings
from keystile.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KeystileError,
    MigrationError,
    NotFound,
    QuerySyntaxError,
    StorageError,
    TooLarge,
    Unauthenticated,
)

__version__ = "0.1.0"

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "KeystileError",
    "MigrationError",
    "NotFound",
    "QuerySyntaxError",
    "Settings",
    "StorageError",
    "TooLarge",
    "Unauthenticated",
    "__version__",
]

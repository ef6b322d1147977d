"""Storage backends, chosen by the scheme of ``KEYSTILE_DATABASE_URL`` (SPEC X1, X2).

==========================  ===============================================================
``sqlite:///path/to/db``     a SQLite file (the embedded default)
``memory://``                a private in-memory SQLite database (tests, throwaway demos)
``postgresql://…``           PostgreSQL through asyncpg (``postgres://`` is accepted too)
==========================  ===============================================================

Drivers are imported only when their scheme is used.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from keystile.core.clock import Clock
from keystile.errors import InvalidInput
from keystile.storage._driver import Executor
from keystile.storage._sql import SqlStorage

SCHEMES = ("sqlite", "memory", "postgresql", "postgres")


async def open_storage(
    url: str, clock: Clock, *, timeout_s: float | None = None, writer_thread: bool = True
) -> SqlStorage:
    """Open the storage a URL names (without migrating it). ``timeout_s``: the deadline of each round trip to a
    database server (PostgreSQL; default 5 s). ``writer_thread=False``: a SQLite file is written on the caller's
    thread, holding its event loop meanwhile (for a process that does nothing else: the event writer).

    Raises :class:`InvalidInput` for an unknown scheme and :class:`~keystile.errors.StorageError` when the
    database cannot be opened or reached.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from keystile.storage.sqlite import SqliteDriver

        return SqlStorage(SqliteDriver(None), clock)
    if scheme == "sqlite":
        from keystile.storage.sqlite import SqliteDriver

        return SqlStorage(SqliteDriver(sqlite_path(url), writer_thread=writer_thread), clock)
    if scheme in ("postgresql", "postgres"):
        from keystile.storage.postgresql import PostgresDriver

        if timeout_s is None:
            return SqlStorage(await PostgresDriver.connect(url), clock)
        return SqlStorage(await PostgresDriver.connect(url, timeout_s=timeout_s), clock)
    raise InvalidInput(
        f"unknown database URL scheme {scheme!r}: use sqlite:///path, postgresql://… or memory://",
        code="invalid_database_url",
    )


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/db`` and ``sqlite:////absolute/db`` (SQLAlchemy's convention) as a path."""
    path = unquote(url.split("://", 1)[1])
    if not path.startswith("/") or path == "/":
        raise InvalidInput("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
    return Path(path[1:])


__all__ = ["SCHEMES", "Executor", "SqlStorage", "open_storage", "sqlite_path"]

"""The small surface the shared SQL needs from a database driver.

Queries are written once, with PostgreSQL's ``$1`` placeholders; the SQLite driver rewrites them to SQLite's
numbered ``?1`` form. Rows are mappings by column name (``sqlite3.Row`` and ``asyncpg.Record`` both are).
Drivers translate their own exceptions: a uniqueness clash becomes :class:`~keystile.errors.Conflict`, anything
else :class:`~keystile.errors.StorageError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = Any  # sqlite3.Row | asyncpg.Record: both index by column name
Dialect = Literal["sqlite", "postgresql"]


class Executor(Protocol):
    async def fetchone(self, sql: str, *args: Any) -> Row | None: ...
    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def copy_records(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (values of ``columns``) into ``table`` in bulk: PostgreSQL's ``COPY``, else an
        ``executemany`` of ``INSERT``. ``table`` and ``columns`` are trusted names, never a caller's input."""
        ...


class Driver(Executor, Protocol):
    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """A transaction that commits on success and rolls back on an exception."""
        ...

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Row | None]:
        """Run ``statements`` in one transaction; returns each statement's first row."""
        ...

    async def run_script(self, tx: Executor, script: str) -> None:
        """Run a migration script (several statements) inside the transaction ``tx``."""
        ...

    async def lock_schema(self, tx: Executor) -> None:
        """Hold a lock, until ``tx`` ends, that keeps other processes from migrating at the same time."""
        ...

    async def close(self) -> None: ...

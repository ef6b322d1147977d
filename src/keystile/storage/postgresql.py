"""PostgreSQL through asyncpg: a connection pool, every call awaited (SPEC X2, X3).

asyncpg is imported here only, so SQLite users never load it. Its errors are translated at this edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from keystile.errors import Conflict, InvalidInput, StorageError
from keystile.storage._driver import Dialect, Executor, Row

T = TypeVar("T")
MIGRATION_TIMEOUT_S = 24 * 3600.0
_CONNECT_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError, TimeoutError)


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict("an object with the same unique value already exists", code="conflict")
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        # U+0000 in a text or JSON parameter (an id from a URL, say): the request is at fault, not the database.
        # The services refuse it in what they store; this covers every lookup as well.
        return InvalidInput("text with the character U+0000 cannot be stored or looked up", code="invalid_character")
    if isinstance(exc, asyncpg.PostgresError):
        return StorageError(f"PostgreSQL failed: {type(exc).__name__} ({exc.sqlstate})")
    return StorageError(f"PostgreSQL unreachable: {type(exc).__name__}")


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except (asyncpg.PostgresError, *_CONNECT_ERRORS) as exc:
        raise _translate(exc) from exc


class _Conn:
    def __init__(self, conn: Any) -> None:  # a Connection or a pool's proxy of one
        self._conn = conn

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        return await _guard(self._conn.fetchrow(sql, *args))

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return list(await _guard(self._conn.fetch(sql, *args)))

    async def execute(self, sql: str, *args: Any) -> int:
        status = await _guard(self._conn.execute(sql, *args))
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await _guard(self._conn.executemany(sql, list(rows)))

    async def run_script(self, script: str) -> None:
        # No arguments: the simple protocol, which runs several statements.
        await _guard(self._conn.execute(script, timeout=MIGRATION_TIMEOUT_S))

    async def copy_records(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        # COPY in the binary format: several times cheaper per row than an INSERT for bulk writes.
        await _guard(self._conn.copy_records_to_table(table, records=rows, columns=list(columns)))


class PostgresDriver:
    """A pool of connections to one PostgreSQL database; create it with :meth:`connect`."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDriver:
        """Open the pool; raises :class:`StorageError` when the server cannot be reached."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=30)
        except (asyncpg.PostgresError, *_CONNECT_ERRORS) as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
        assert pool is not None
        return cls(pool)

    async def _with_conn(self, fn: Callable[[_Conn], Awaitable[T]]) -> T:
        try:
            async with self._pool.acquire() as conn:
                return await fn(_Conn(conn))
        except (asyncpg.PostgresError, *_CONNECT_ERRORS) as exc:
            raise _translate(exc) from exc

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        return await self._with_conn(lambda c: c.fetchone(sql, *args))

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return await self._with_conn(lambda c: c.fetchall(sql, *args))

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._with_conn(lambda c: c.execute(sql, *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._with_conn(lambda c: c.executemany(sql, rows))

    async def copy_records(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        await self._with_conn(lambda c: c.copy_records(table, columns, rows))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Conn]:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield _Conn(conn)
        except (asyncpg.PostgresError, *_CONNECT_ERRORS) as exc:
            raise _translate(exc) from exc

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Row | None]:
        """Run ``statements`` in one transaction; returns each statement's first row."""
        async with self.transaction() as tx:
            return [await tx.fetchone(sql, *args) for sql, args in statements]

    async def run_script(self, tx: Executor, script: str) -> None:
        if isinstance(tx, _Conn):
            # Not bound by the pool's command timeout: a migration that builds an index over a large table (the
            # rollups of millions of events) runs for minutes.
            await tx.run_script(script)
        else:
            await tx.execute(script)

    async def lock_schema(self, tx: Executor) -> None:
        # Processes starting together must not migrate at once; the lock ends with the transaction. Waiting for it
        # is not bound by the command timeout either: the other process may be running a long migration.
        await self.run_script(tx, "SELECT pg_advisory_xact_lock(7300184635)")

    async def close(self) -> None:
        await self._pool.close()

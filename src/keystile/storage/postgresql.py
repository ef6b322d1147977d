"""PostgreSQL through asyncpg: a connection pool, every call awaited (SPEC X2, X3).

asyncpg is imported here only, so SQLite users never load it. Its errors are translated at this edge.

Every round trip has a deadline (``timeout_s``: connecting, taking a connection from the pool, each command), so a
database that stops answering without closing its connections (a partition, a frozen server) fails calls instead
of holding them. A call that finds the database unreachable opens a circuit breaker: until its backoff is over,
calls fail at once, and then one trial call at a time goes out until one succeeds. So during an outage each caller
fails fast (and verification serves its cached keys), and recovery needs no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from keystile.core.breaker import Breaker
from keystile.core.clock import Clock, SystemClock
from keystile.errors import Conflict, InvalidInput, StorageError
from keystile.storage._driver import Dialect, Executor, Row

T = TypeVar("T")
MIGRATION_TIMEOUT_S = 24 * 3600.0
DEFAULT_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 2.0
# InternalClientError: asyncpg's protocol found itself in an impossible state, as when the server ended the
# connection while a query was being sent on it; the connection is unusable, like one that was cut.
_CONNECT_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,
    TimeoutError,
)


READERS = 2
"""Connections of their own, outside the pool, for single reads (``fetchone``, the one read of a cache miss):
taking a connection from asyncpg's pool and giving it back costs ~90 µs of the event loop (a task for the
acquire's deadline, another for the release), as much as a third of a miss (SPEC P4; bench/README.md). An idle
reader is popped from a list instead; when all are busy, the read goes through the pool."""

COPY_SLICE = 200
"""Rows :meth:`_Conn.copy_records` has asyncpg encode between two yields to the event loop (~0.3 ms)."""


async def _sliced(rows: Sequence[Sequence[Any]]) -> AsyncIterator[Sequence[Any]]:
    for start in range(0, len(rows), COPY_SLICE):
        if start:
            await asyncio.sleep(0)
        for row in rows[start : start + COPY_SLICE]:
            yield row


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
        # COPY in the binary format: several times cheaper per row than an INSERT for bulk writes. The rows go in
        # as an asynchronous iterable that yields to the event loop between slices: asyncpg encodes an iterable
        # whole without yielding (a batch of events held a server's loop for several milliseconds).
        records = _sliced(rows) if len(rows) > COPY_SLICE else rows
        await _guard(self._conn.copy_records_to_table(table, records=records, columns=list(columns)))


def _answered(exc: BaseException) -> bool:
    """Whether a call that raised ``exc`` left its connection usable: the database answered with an error."""
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, asyncpg.PostgresConnectionError)


async def _session_kept(conn: asyncpg.Connection[Any]) -> None:
    """What a connection going back to the pool needs besides asyncpg's own rollback of an open transaction:
    nothing. asyncpg's default reset (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) is a round
    trip on every release, so a cache miss paid two round trips instead of one (SPEC P4). Keystile leaves no
    session state on pooled connections: its advisory locks are transaction-scoped, it sets no settings, opens no
    cursors outside a transaction, and LISTENs on a connection of its own (keystile.notify.postgresql).
    """


class PostgresDriver:
    """A pool of connections to one PostgreSQL database; create it with :meth:`connect`."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool[Any], timeout_s: float, clock: Clock, dsn: str | None = None) -> None:
        self._pool = pool
        self._timeout = timeout_s
        self._dsn = dsn
        """Where readers connect (``None``: no readers, every read through the pool)."""
        self._idle_readers: list[Any] = []
        self._readers = 0
        """Reader connections open, idle or busy (at most :data:`READERS`)."""
        self._closing = False
        self.breaker = Breaker(clock, FIRST_BACKOFF_S, MAX_BACKOFF_S)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> PostgresDriver:
        """Open the pool, with ``timeout_s`` as the deadline of every round trip; raises :class:`StorageError`
        when the server cannot be reached. ``clock`` times the breaker's backoff (real time by default: it is
        about the network, not the domain's time, which tests move by hand)."""
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=timeout_s,
                timeout=timeout_s,
                reset=_session_kept,
            )
        except (asyncpg.PostgresError, *_CONNECT_ERRORS) as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
        assert pool is not None
        return cls(pool, timeout_s, clock or SystemClock(), dsn)

    def _admit(self) -> None:
        if not self.breaker.admit():
            raise StorageError(
                f"PostgreSQL unreachable (it failed {self.breaker.wait_s() * 1000:.0f} ms before the next try)"
            )

    def _failed(self, exc: BaseException) -> BaseException:
        """Tell the breaker how a call ended in ``exc``; returns the exception to raise."""
        cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ is not None else exc
        if isinstance(cause, _CONNECT_ERRORS):
            self.breaker.failed()
        elif isinstance(exc, Exception):
            self.breaker.succeeded()  # the server answered, if only with an error (or the caller's code raised)
        else:
            self.breaker.abandoned()  # cancelled: no word about the database either way
        if isinstance(exc, (asyncpg.PostgresError, *_CONNECT_ERRORS)):
            return _translate(exc)
        return exc

    async def _with_conn(self, fn: Callable[[_Conn], Awaitable[T]]) -> T:
        """``fn`` on a connection of the pool."""
        self._admit()
        try:
            conn = await self._pool.acquire(timeout=self._timeout)
        except BaseException as exc:
            raised = self._failed(exc)
            if raised is exc:
                raise
            raise raised from exc
        try:
            result = await fn(_Conn(conn))
        except BaseException as exc:
            raised = await self._given_back(conn, exc)
            if raised is exc:
                raise
            raise raised from exc
        await self._pool.release(conn)
        self.breaker.succeeded()
        return result

    async def _given_back(self, conn: Any, exc: BaseException) -> BaseException:
        """After a call on ``conn`` ended in ``exc``: tell the breaker, give the connection back to the pool (closed
        first unless the database answered with an error), and return the exception to raise."""
        raised = self._failed(exc)
        if not _answered(exc):
            # Cut, timed out, cancelled mid-query or in an unknown state: closed at once. A release would first wait
            # for the query's cancellation, sent over a new connection to a database that may not answer.
            conn.terminate()
        with contextlib.suppress(Exception):
            await self._pool.release(conn)
        return raised

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        if not self._idle_readers and (self._dsn is None or self._closing or self._readers >= READERS):
            return await self._with_conn(lambda c: c.fetchone(sql, *args))
        self._admit()
        conn = None
        try:
            conn = await self._reader()
            row = await conn.fetchrow(sql, *args)
        except BaseException as exc:
            if conn is not None:
                self._reader_done(conn, healthy=_answered(exc))
            raised = self._failed(exc)
            if raised is exc:
                raise
            raise raised from exc
        self._reader_done(conn, healthy=True)
        self.breaker.succeeded()
        return row

    async def _reader(self) -> Any:
        """An idle reader that is still open, else a new one (the caller checked there is room for one)."""
        idle = self._idle_readers
        while idle:
            conn = idle.pop()
            if not conn.is_closed():
                return conn
            self._readers -= 1  # ended by the server since it last answered
        self._readers += 1
        try:
            return await asyncpg.connect(self._dsn, timeout=self._timeout, command_timeout=self._timeout)
        except BaseException:
            self._readers -= 1
            raise

    def _reader_done(self, conn: Any, *, healthy: bool) -> None:
        if healthy and not self._closing and not conn.is_closed():
            self._idle_readers.append(conn)
        else:
            self._readers -= 1
            conn.terminate()

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
        self._admit()
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                yield _Conn(conn)
        except BaseException as exc:
            raised = self._failed(exc)
            if raised is exc:
                raise
            raise raised from exc
        self.breaker.succeeded()

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
        self._closing = True
        idle, self._idle_readers = self._idle_readers, []
        for conn in idle:
            self._readers -= 1
            try:
                await asyncio.wait_for(conn.close(), self._timeout)
            except (TimeoutError, *_CONNECT_ERRORS):
                conn.terminate()
        # Gracefully when the database answers; a shutdown must not hang on one that does not.
        try:
            await asyncio.wait_for(self._pool.close(), self._timeout)
        except TimeoutError:
            self._pool.terminate()

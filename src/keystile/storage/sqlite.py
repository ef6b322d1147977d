"""SQLite (the embedded default) and ``memory://`` (an in-memory SQLite database, for tests).

Reads are called directly on the event loop: an indexed read takes microseconds, far less than a hop to a
thread. Writes go through one writer thread, so the loop never waits on a disk sync, and one asyncio lock
serialises transactions within the process (SQLite has one writer anyway; ``busy_timeout`` covers other
processes such as the CLI). The file is in WAL mode with ``synchronous=NORMAL``: durable across a process crash,
and a commit costs microseconds instead of a full fsync.

The database holds key digests and the audit log, so a new one is made readable by its owner only (0600, in a
new directory 0700), whatever the umask; SQLite gives its -wal and -shm files the database file's mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from keystile.errors import Conflict, StorageError
from keystile.storage._driver import Dialect, Executor, Row

T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\$(\d+)")
COPY_SLICE = 40
"""Rows :meth:`_Calls.copy_records` inserts between two yields to the event loop: at most ~0.5 ms of inserts (500
held it for 2.5 to 7 ms on a busy 2-core machine, bench/loop_lag.py)."""
WRITER_CACHE_KIB = 32_768
"""The writing connection's page cache (SQLite's default is 2 MiB), filled only as pages are used. Verification
events of many keys update index and rollup pages all over the file; with the default cache a batch read most of
them back from the OS at every write, and the event writer spent a third more time per event (bench/README.md)."""
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


def _translate(exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return Conflict("an object with the same unique value already exists", code="conflict")
    return StorageError(f"SQLite failed: {type(exc).__name__}")


class _Sql:
    """Placeholder rewriting, memoised per statement text."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def __call__(self, sql: str) -> str:
        rewritten = self._cache.get(sql)
        if rewritten is None:
            rewritten = self._cache[sql] = _PLACEHOLDER.sub(r"?\1", sql)
        return rewritten


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _create_private(path: Path) -> None:
    """Create the database file 0600 (and its directory 0700) unless it exists; SQLite would make it 0644.

    Existing files and directories keep their modes: ``keystile init`` and ``serve`` warn about loose ones.
    """
    try:
        path.parent.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        if not path.parent.is_dir():
            raise
    else:
        path.parent.chmod(0o700)  # whatever the umask
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)


def _audit_hash(prev_hash: str, canonical: str) -> str:
    """SQL ``audit_hash(prev_hash, canonical)``: an audit entry's link in the hash chain, computed in the statement
    that appends it (see :mod:`keystile.storage._audit` and :func:`keystile.core.auditchain.chain_hash`)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical.encode()).hexdigest()


def _connect(target: str, *, uri: bool = False, cache_kib: int | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=uri)
    conn.row_factory = sqlite3.Row
    # SQLite's own lower() folds ASCII only, so a search for "über" missed "ÜBER" (PostgreSQL finds it).
    conn.create_function("lower", 1, _lower, deterministic=True)
    conn.create_function("audit_hash", 2, _audit_hash, deterministic=True)
    for pragma in _PRAGMAS:
        conn.execute(pragma)
    if cache_kib is not None:
        conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
    return conn


class _Calls:
    """Statement execution on one connection, optionally through a thread (the writer)."""

    def __init__(
        self, conn: sqlite3.Connection, sql: _Sql, run: Callable[[Callable[[], Any]], Any], *, may_yield: bool = False
    ) -> None:
        self._conn = conn
        self._sql = sql
        self._run = run
        self._may_yield = may_yield
        """Whether a transaction on this connection may let other tasks run midway: not when reads share the
        connection (in memory), or they would see the transaction's rows before its commit."""

    async def _call(self, fn: Callable[[], T]) -> T:
        try:
            result: T = await self._run(fn)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return result

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        text = self._sql(sql)
        return await self._call(lambda: self._conn.execute(text, args).fetchone())

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        text = self._sql(sql)
        return await self._call(lambda: self._conn.execute(text, args).fetchall())

    async def execute(self, sql: str, *args: Any) -> int:
        text = self._sql(sql)
        return await self._call(lambda: self._conn.execute(text, args).rowcount)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        text = self._sql(sql)
        batch = list(rows)
        await self._call(lambda: self._conn.executemany(text, batch))

    async def copy_records(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        # On the event loop's thread, a slice at a time, letting other tasks run in between. Through the writer
        # thread, each row's binding (with the GIL) and step (without) handed the GIL back and forth with the
        # loop's thread, which cost more than the insert itself (bench/events_verify.py). Commits, which may
        # checkpoint and wait for the disk, stay in the writer thread.
        marks = ", ".join("?" * len(columns))
        text = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        conn = self._conn
        for start in range(0, len(rows), COPY_SLICE):
            if start and self._may_yield:
                await asyncio.sleep(0)
            try:
                conn.executemany(text, rows[start : start + COPY_SLICE])
            except sqlite3.Error as exc:
                raise _translate(exc) from exc


async def _inline(fn: Callable[[], T]) -> T:
    return fn()


class SqliteDriver(_Calls):
    """A SQLite database file, or a private in-memory database when ``path`` is ``None``."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path | None, *, writer_thread: bool = True) -> None:
        sql = _Sql()
        self.path = path
        self._lock = asyncio.Lock()
        try:
            if path is None:
                self._writer_conn = _connect(":memory:")
                self._thread: ThreadPoolExecutor | None = None
            else:
                _create_private(path)
                self._writer_conn = _connect(str(path), cache_kib=WRITER_CACHE_KIB)
                # Writes (and their commits, which may wait for the disk) go through a thread of their own, so that a
                # server's event loop keeps answering meanwhile; a process with nothing else to do writes inline,
                # sparing a thread hop per statement (bench/README.md: 8.5 -> 6.7 us an event in batches of 200).
                self._thread = (
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="keystile-sqlite-writer")
                    if writer_thread
                    else None
                )
            reader = _connect(str(path)) if path is not None else self._writer_conn
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the SQLite database at {path}: {exc}") from exc
        super().__init__(reader, sql, _inline)
        self._writer = _Calls(self._writer_conn, sql, self._in_writer, may_yield=path is not None)

    async def _in_writer(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Calls]:
        async with self._lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Row | None]:
        """Run ``statements`` in one transaction, in ONE trip to the writer thread (group commit); returns each
        statement's first row. Many small writes then share one hop and one commit instead of three hops each."""
        texts = [(self._sql(sql), tuple(args)) for sql, args in statements]
        conn = self._writer_conn

        def run() -> list[Row | None]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = [conn.execute(text, args).fetchone() for text, args in texts]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return rows

        async with self._lock:
            try:
                return await self._in_writer(run)
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    async def run_script(self, tx: Executor, script: str) -> None:
        # Statement by statement, inside the caller's transaction (executescript would commit first).
        for statement in _statements(script):
            await tx.execute(statement)

    async def lock_schema(self, tx: Executor) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the database's one write lock."""

    async def close(self) -> None:
        async with self._lock:
            if self._thread is not None:
                self._thread.shutdown(wait=True)
            if self._conn is not self._writer_conn:
                self._conn.close()
            self._writer_conn.close()


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (our scripts keep ``;`` out of literals and comments; a trigger's
    body, whose statements end in ``;`` too, stays whole: SQLite's own parser says where a statement is complete)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    statements = []
    pending = ""
    for part in "\n".join(lines).split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            text = pending.strip().removesuffix(";").strip()
            if text:
                statements.append(text)
            pending = ""
    return statements

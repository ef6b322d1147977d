"""Cache invalidation across processes through PostgreSQL LISTEN/NOTIFY (SPEC V6), when there is no Redis.

Changes are published with ``pg_notify`` on the storage's own pool, after the transaction that made them has
committed (the services publish after commit), and heard on a dedicated connection that LISTENs; a query every
quiet second, with a one-second deadline, finds a connection that died without closing or a database that stopped
answering, so that the caches fall back to their short TTL within about two seconds (SPEC V6).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

from keystile.config import mask_url
from keystile.core.clock import Clock
from keystile.errors import StorageError
from keystile.notify._bus import NotifyingBus
from keystile.storage import Executor

CHANNEL = "keystile_changes"
QUIET_S = 1.0
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresChangeBus(NotifyingBus):
    """Publishes changes with NOTIFY through ``executor`` and LISTENs for them on a connection to ``dsn``;
    ``clock`` times how long an outage has lasted, for its log lines."""

    def __init__(self, dsn: str, executor: Executor, channel: str = CHANNEL, *, clock: Clock | None = None) -> None:
        super().__init__(f"PostgreSQL at {mask_url(dsn)}", clock)
        self._dsn = dsn
        self._executor = executor
        self.channel = channel
        self.backend_pid: int | None = None
        """The server process of the listening connection, while there is one."""

    async def _send(self, payload: str) -> None:
        await self._executor.execute("SELECT pg_notify($1, $2)", self.channel, payload)

    async def _listen(self, subscribed: Callable[[], None]) -> None:
        conn: Any = None
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(self._dsn, timeout=5)
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self.channel, self._heard)
            self.backend_pid = conn.get_server_pid()
            subscribed()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), QUIET_S)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=QUIET_S)
        except _ERRORS as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        finally:
            self.backend_pid = None
            if conn is not None:
                conn.terminate()

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.received_payload(payload)

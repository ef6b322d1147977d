"""PostgreSQL connections (SPEC P4): a read is one round trip. asyncpg's default release runs a reset query
(``RESET ALL`` and more) on every connection handed back, a second round trip per call; Keystile's pool hands
connections back as they are, which is safe because it keeps no session state on them (a transaction left open is
still rolled back). Single reads (a cache miss's) go through two reader connections of their own, not the pool."""

from __future__ import annotations

import asyncio

import pytest

from keystile.errors import StorageError
from keystile.storage.postgresql import PostgresDriver

pytestmark = pytest.mark.postgres


async def test_a_released_connection_is_not_reset_so_a_call_is_one_round_trip(fresh_pg_url: str) -> None:
    driver = await PostgresDriver.connect(fresh_pg_url, min_size=1, max_size=1)
    try:
        # RESET ALL on release would put application_name back to its default before the next read.
        await driver.execute("SET application_name = 'keystile-pool-probe'")
        [row] = await driver.fetchall("SELECT current_setting('application_name') AS name, pg_backend_pid() AS pid")
        assert row["name"] == "keystile-pool-probe"
        [again] = await driver.fetchall("SELECT pg_backend_pid() AS pid")
        assert again["pid"] == row["pid"]  # the same connection, handed back as it was
    finally:
        await driver.close()


async def test_a_transaction_that_failed_is_rolled_back_before_the_connection_is_reused(fresh_pg_url: str) -> None:
    driver = await PostgresDriver.connect(fresh_pg_url, min_size=1, max_size=1)
    try:
        await driver.execute("CREATE TABLE pool_probe (n integer)")

        async def failing() -> None:
            async with driver.transaction() as tx:
                await tx.execute("INSERT INTO pool_probe VALUES (1)")
                await tx.execute("SELECT no_such_column FROM pool_probe")

        with pytest.raises(StorageError):
            await failing()
        # Left open, the aborted transaction would refuse this read; committed, the row would be counted.
        row = await driver.fetchone("SELECT count(*) AS n FROM pool_probe")
        assert row is not None
        assert row["n"] == 0
    finally:
        await driver.close()


async def test_single_reads_reuse_a_kept_connection_and_survive_its_loss(fresh_pg_url: str) -> None:
    driver = await PostgresDriver.connect(fresh_pg_url, min_size=1, max_size=4)
    try:
        pids = {(await driver.fetchone("SELECT pg_backend_pid() AS pid"))["pid"] for _ in range(20)}  # type: ignore[index]
        assert len(pids) == 1  # one connection serves reads one after another

        # The database ends it (a restart, an administrator): the read on it fails, the next ones do not.
        (pid,) = pids
        await driver.execute("SELECT pg_terminate_backend($1)", pid)
        outcomes = []
        for _ in range(3):
            try:
                row = await driver.fetchone("SELECT pg_backend_pid() AS pid")
                assert row is not None
                outcomes.append(row["pid"] != pid)
            except StorageError:
                outcomes.append(False)
            await asyncio.sleep(0.3)  # past the breaker's first backoff
        assert outcomes[-1] is True

        # Many reads at once: some through kept connections, the rest through the pool; all answered.
        rows = await asyncio.gather(*(driver.fetchone("SELECT $1::int AS n", n) for n in range(50)))
        assert [row["n"] for row in rows if row is not None] == list(range(50))
    finally:
        await driver.close()

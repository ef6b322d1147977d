"""Contract: versioned migrations (SPEC X2), and opening storage by URL."""

from __future__ import annotations

import asyncio
import socket

import pytest

from keystile.core.clock import ManualClock
from keystile.errors import InvalidInput, MigrationError, StorageError
from keystile.storage import SqlStorage, open_storage
from keystile.storage._migrate import available


async def test_a_new_database_is_migrated_once_and_then_has_nothing_pending(
    database_url: str, clock: ManualClock
) -> None:
    store = await open_storage(database_url, clock)
    try:
        pending = await store.pending_migrations()
        assert pending, "a new database has every migration pending"
        assert pending == sorted(pending)

        assert await store.migrate() == pending
        assert await store.migrate() == []
        assert await store.pending_migrations() == []
    finally:
        await store.close()


async def test_migrating_again_changes_nothing(storage: SqlStorage) -> None:
    before = await storage.driver.fetchall("SELECT version, checksum, applied_at FROM keystile_migrations")

    assert await storage.migrate() == []
    assert await storage.pending_migrations() == []
    after = await storage.driver.fetchall("SELECT version, checksum, applied_at FROM keystile_migrations")
    assert [dict(row) for row in after] == [dict(row) for row in before]


async def test_the_reserved_root_api_exists_after_migrating(storage: SqlStorage) -> None:
    root = await storage.get_api("api_root")
    assert root is not None
    assert root.prefix == "ks_root"


async def test_a_schema_newer_than_this_code_is_refused(storage: SqlStorage) -> None:
    await storage.driver.execute(
        "INSERT INTO keystile_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
        9999,
        "from_the_future",
        "0" * 64,
        0,
    )

    with pytest.raises(MigrationError, match="newer"):
        await storage.pending_migrations()
    with pytest.raises(MigrationError, match="newer"):
        await storage.migrate()


async def test_an_applied_migration_whose_text_changed_is_refused(storage: SqlStorage) -> None:
    await storage.driver.execute("UPDATE keystile_migrations SET checksum = $1 WHERE version = 1", "f" * 64)

    with pytest.raises(MigrationError, match="differs"):
        await storage.pending_migrations()
    with pytest.raises(MigrationError, match="differs"):
        await storage.migrate()


def _closed_port() -> int:
    """A local port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_postgresql_is_a_storage_error(clock: ManualClock) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/keystile"

    with pytest.raises(StorageError) as caught:
        await open_storage(url, clock)
    assert type(caught.value) is StorageError
    assert caught.value.code == "storage_unavailable"


async def test_an_unknown_url_scheme_is_invalid_input(clock: ManualClock) -> None:
    with pytest.raises(InvalidInput) as caught:
        await open_storage("mysql://root@localhost/keystile", clock)
    assert caught.value.code == "invalid_database_url"


async def test_two_processes_starting_together_migrate_once(database_url: str, clock: ManualClock) -> None:
    first, second = await open_storage(database_url, clock), await open_storage(database_url, clock)
    try:
        everything = [m.version for m in available(first.dialect)]

        applied = list(await asyncio.gather(first.migrate(), second.migrate()))

        if database_url.startswith("memory:"):
            # Each memory:// storage is a database of its own: both start empty.
            assert applied == [everything, everything]
        else:
            # Each migration is applied once, by whichever process takes the lock first: one may apply the first
            # and the other the second (seen on a loaded machine), never both the same.
            assert sorted(version for versions in applied for version in versions) == everything
        assert await first.pending_migrations() == await second.pending_migrations() == []
        rows = await first.driver.fetchall("SELECT version FROM keystile_migrations ORDER BY version")
        assert [row["version"] for row in rows] == everything
    finally:
        await first.close()
        await second.close()

"""Contract: rollups (SPEC O3) written before the upgrade that stores them clustered (SQLite migration 0012) keep
their counts and keep adding up; and on SQLite a key's, an owner's or an API's counts are read through that
column's index, not through every key's rows of the time range; and SQLite opened without a writer thread (the
event writer process) commits and closes its file."""

from __future__ import annotations

import os
from typing import Any

import pytest
from tests.storage.conftest import T0

from keystile.core.clock import ManualClock
from keystile.core.models import EventFilter, EventRow
from keystile.core.ports import Granularity
from keystile.storage import SqlStorage, open_storage
from keystile.storage._driver import Row
from keystile.storage._migrate import migrate

MINUTE = 60_000


def _rows(
    count: int, *, key: str, owner: str, api: str = "api_a", outcome: str = "VALID", at: int = T0
) -> list[EventRow]:
    return [
        (f"evt_{key}_{outcome}_{at + i:015d}", at + i, None, api, key, owner, outcome, None, "[]", 5)
        for i in range(count)
    ]


def _open_files(prefix: str) -> list[str]:
    """This process's open files whose path starts with ``prefix`` (the database, its WAL and shared memory)."""
    paths = (os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd"))
    return [path for path in paths if path.startswith(prefix)]


async def _counts(store: SqlStorage, granularity: Granularity, where: EventFilter) -> dict[tuple[int, str | None], int]:
    found = await store.count_rollups(granularity, "outcome", where, limit=1000)
    return {(c.bucket, c.group): c.count for c in found}


async def test_counts_written_before_the_upgrade_are_kept_and_keep_adding_up(
    database_url: str, clock: ManualClock
) -> None:
    store = await open_storage(database_url, clock)
    try:
        await migrate(store.driver, 0, up_to=11)
        await store.write_event_rows(_rows(3, key="key_a", owner="own_a") + _rows(2, key="key_b", owner="own_b"))
        await store.write_event_rows(_rows(1, key="key_a", owner="own_a", outcome="REVOKED"))

        await store.migrate()

        bucket = T0 - T0 % MINUTE
        assert await _counts(store, "minute", EventFilter(key_id="key_a")) == {
            (bucket, "VALID"): 3,
            (bucket, "REVOKED"): 1,
        }
        await store.write_event_rows(_rows(4, key="key_a", owner="own_a", at=T0 + 10))
        assert await _counts(store, "minute", EventFilter(key_id="key_a")) == {
            (bucket, "VALID"): 7,
            (bucket, "REVOKED"): 1,
        }
        assert await _counts(store, "minute", EventFilter(owner_id="own_b")) == {(bucket, "VALID"): 2}
        day = T0 - T0 % 86_400_000
        assert await _counts(store, "day", EventFilter(api_id="api_a")) == {(day, "VALID"): 9, (day, "REVOKED"): 1}
    finally:
        await store.close()


@pytest.mark.parametrize("database_url", ["memory", "sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("where", "index"),
    [
        (EventFilter(key_id="key_a", since=T0, until=T0 + MINUTE), "rollups_by_key"),
        (EventFilter(owner_id="own_a", api_id="api_a"), "rollups_by_owner"),
        (EventFilter(api_id="api_a", since=T0), "rollups_by_api"),
    ],
)
async def test_sqlite_reads_a_filtered_count_through_that_columns_index(
    storage: SqlStorage, where: EventFilter, index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Many keys in the same minute: without its index, one key's counts were read from all of their rows.
    for n in range(40):
        await storage.write_event_rows(_rows(1, key=f"key_{n}", owner=f"own_{n}"))
    await storage.write_event_rows(_rows(2, key="key_a", owner="own_a"))

    captured: list[str] = []
    fetchall = storage.driver.fetchall

    async def explained(sql: str, *args: Any) -> list[Row]:
        if "event_rollups" in sql:
            captured.extend(row[3] for row in await fetchall("EXPLAIN QUERY PLAN " + sql, *args))
        return await fetchall(sql, *args)

    monkeypatch.setattr(storage.driver, "fetchall", explained)
    counts = await _counts(storage, "minute", where)

    assert sum(counts.values()) == (42 if where.key_id is None and where.owner_id is None else 2)
    assert any(f"INDEX {index} " in step for step in captured), captured


async def test_sqlite_written_without_a_writer_thread_commits_and_closes_its_file(
    tmp_path: Any, clock: ManualClock
) -> None:
    # The event writer process opens SQLite this way: statements on its own thread, no hop per statement.
    url = f"sqlite:///{tmp_path / 'keystile.db'}"
    reader = await open_storage(url, clock)
    await reader.migrate()
    writer = await open_storage(url, clock, writer_thread=False)
    try:
        await writer.write_event_rows(_rows(3, key="key_a", owner="own_a"))
        await writer.write_event_rows(_rows(2, key="key_a", owner="own_a", at=T0 + 10))
        # Committed: another connection to the file counts them.
        bucket = T0 - T0 % MINUTE
        assert await _counts(reader, "minute", EventFilter(key_id="key_a")) == {(bucket, "VALID"): 5}
        assert len(await reader.list_events(EventFilter(key_id="key_a"), before=None, limit=10)) == 5
    finally:
        await writer.close()
        await reader.close()
    assert _open_files(str(tmp_path / "keystile.db")) == []  # the writer's two connections and the reader's

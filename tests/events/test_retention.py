"""Retention of events and rollups (SPEC O3, X3), on every backend: raw events and minute rollups go after 30
days, hour and day rollups after 400; on SQLite rows are deleted a chunk at a time, on PostgreSQL whole day
partitions are dropped (checked in the catalog)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from keystile.core.clock import ManualClock
from keystile.core.ids import new_id
from keystile.core.models import EventFilter, VerificationEvent
from keystile.core.ports import Granularity
from keystile.service import Keystile
from keystile.storage import SqlStorage, _event_writes, open_storage
from tests.analytics.helpers import DAY, HOUR

PG_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgres)]


def events_at(ts: int, count: int, outcome: str = "VALID") -> list[VerificationEvent]:
    return [VerificationEvent(new_id("evt", ts + i), ts + i, outcome, 3, api_id="api_a", key_id="key_a")
            for i in range(count)]  # fmt: skip


async def rollup_total(ks: Keystile, granularity: Granularity) -> int:
    counts = await ks.storage.count_rollups(granularity, "outcome", EventFilter(), limit=100_000)
    return sum(c.count for c in counts)


async def pg_partitions(url: str) -> list[str]:
    """The day partitions of ``events``, read from PostgreSQL's catalog."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'events'::regclass ORDER BY 1"""
        )
    finally:
        await conn.close()
    return [row["relname"] for row in rows]


@pytest.fixture
def now(clock: ManualClock) -> int:
    """12:00 UTC of a day, so that every ``now - n days`` below is mid-day, far from a partition's edge."""
    ms = int(clock.now() * 1000)
    clock.advance((ms - ms % DAY + 12 * HOUR + DAY - ms) / 1000)
    return int(clock.now() * 1000)


@pytest.fixture
async def written(ks: Keystile, now: int) -> dict[str, list[VerificationEvent]]:
    """Events 2 days old (kept), 45 days old (raw gone, hour and day rollups kept), 402 days old (all gone)."""
    ages = {"recent": 2, "old": 45, "ancient": 402}
    made = {name: events_at(now - days * DAY, 12) for name, days in ages.items()}
    for batch in made.values():
        await ks.events.write(batch)
    return made


async def test_a_pass_removes_what_is_past_each_retention(
    ks: Keystile, written: dict[str, list[VerificationEvent]]
) -> None:
    assert await rollup_total(ks, "day") == 36

    pruned = await ks.events.prune()

    kept = await ks.storage.list_events(EventFilter(), before=None, limit=1000)
    assert {e.id for e in kept} == {e.id for e in written["recent"]}
    assert await rollup_total(ks, "minute") == 12
    assert await rollup_total(ks, "hour") == 24
    assert await rollup_total(ks, "day") == 24
    assert pruned.rollups == 1 + 3  # rows: the minute one of old; the minute, hour and day ones of ancient
    again = await ks.events.prune()
    assert (again.events, again.partitions, again.rollups) == (0, (), 0)


@pytest.mark.parametrize("database_url", ["memory", "sqlite"], indirect=True)
async def test_sqlite_deletes_old_rows_a_chunk_at_a_time(
    ks: Keystile, now: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_event_writes, "DELETE_CHUNK", 5)
    await ks.events.write(events_at(now - 40 * DAY, 23))
    await ks.events.write(events_at(now - 29 * DAY, 4))

    pruned = await ks.events.prune()

    assert (pruned.events, pruned.partitions) == (23, ())
    assert len(await ks.storage.list_events(EventFilter(), before=None, limit=100)) == 4
    assert await rollup_total(ks, "minute") == 4
    assert await rollup_total(ks, "day") == 27


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
async def test_postgresql_keeps_a_partition_per_day_and_drops_whole_old_ones(
    ks: Keystile, database_url: str, now: int, written: dict[str, list[VerificationEvent]]
) -> None:
    day = now // DAY
    names = {name: _event_writes.partition_name(day - days) for name, days in (("recent", 2), ("old", 45),
                                                                               ("ancient", 402))}  # fmt: skip
    assert await pg_partitions(database_url) == sorted(names.values())
    assert isinstance(ks.storage, SqlStorage)
    assert await ks.storage.event_partitions() == sorted(names.values())

    pruned = await ks.events.prune()

    assert pruned.events == 0  # nothing deleted row by row
    assert sorted(pruned.partitions) == sorted([names["old"], names["ancient"]])
    assert await pg_partitions(database_url) == [names["recent"]]
    assert len(await ks.storage.list_events(EventFilter(), before=None, limit=1000)) == 12
    # A day whose partition was dropped can be written again (a late batch): it is made anew.
    late = events_at(now - 45 * DAY, 1)
    await ks.events.write(late)
    assert names["old"] in await pg_partitions(database_url)


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
async def test_postgresql_drops_a_partition_only_once_its_whole_day_is_past(
    ks: Keystile, database_url: str, now: int
) -> None:
    raw_cutoff = now - 30 * DAY  # noon of the day 30 days ago
    await ks.events.write(events_at(raw_cutoff - HOUR, 2))  # older than 30 days, but its day is not over
    await ks.events.write(events_at(raw_cutoff - DAY, 2))

    pruned = await ks.events.prune()

    assert pruned.partitions == (_event_writes.partition_name(raw_cutoff // DAY - 1),)
    assert len(await ks.storage.list_events(EventFilter(), before=None, limit=10)) == 2


@pytest.mark.parametrize("database_url", ["sqlite", *PG_ONLY], indirect=True)
async def test_two_processes_pruning_at_once_remove_everything_once(
    ks: Keystile, database_url: str, clock: ManualClock, now: int, written: dict[str, list[VerificationEvent]]
) -> None:
    other = await open_storage(database_url, clock)
    cutoffs = (now - 30 * DAY, now - 400 * DAY)
    try:
        first, second = await asyncio.gather(ks.storage.prune_events(*cutoffs), other.prune_events(*cutoffs))
    finally:
        await other.close()

    if database_url.startswith("postgresql"):
        # One of them dropped the partitions; the other skipped, or found nothing left to drop.
        assert sorted(first.partitions + second.partitions) == [
            _event_writes.partition_name(now // DAY - 402),
            _event_writes.partition_name(now // DAY - 45),
        ]
    else:
        assert first.events + second.events == 24
    assert len(await ks.storage.list_events(EventFilter(), before=None, limit=1000)) == 12
    assert await rollup_total(ks, "day") == 24

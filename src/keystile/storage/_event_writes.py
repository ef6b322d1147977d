"""Writing verification events (SPEC O1, O3, X3) in the SQL both dialects share, and their retention.

One batch is one transaction: the raw events, the batch's counts added to the rollups (aggregated here first, one
upsert row per bucket and group), and each key's ``last_used_at`` moved forward to its newest event (SPEC K4:
written in batches, not per request).

On PostgreSQL raw events live in one partition per UTC day (``events_YYYYMMDD``); a batch first makes sure the
partitions of its days exist (remembered once made, so usually nothing to do), then COPYs each day's events into
its partition (binary COPY: a third less time than an INSERT of the same rows, see ``bench/README.md``), and
retention drops whole partitions. On SQLite retention deletes rows, a chunk per transaction, so the writer never
waits long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from keystile.core.ids import MAX_ID_MS, first_id
from keystile.core.models import EventRow
from keystile.core.ports import Granularity, Pruned
from keystile.errors import StorageError
from keystile.storage._driver import Driver

DAY_MS = 86_400_000
BUCKETS: tuple[tuple[Granularity, int], ...] = (("minute", 60_000), ("hour", 3_600_000), ("day", DAY_MS))
PARTITION_PREFIX = "events_"
DELETE_CHUNK = 5_000
# Advisory lock ids (the migrations hold 7300184635): partitions are created one process at a time, and one
# process at a time drops them.
_PARTITION_LOCK = 7300184636
_PRUNE_LOCK = 7300184637

RollupRow = tuple[str, int, str, str, str, str, int]
"""``(granularity, bucket, api_id, key_id, owner_id, outcome, count)`` with '' for "none"."""

COLUMNS = ("id", "ts", "request_id", "api_id", "key_id", "owner_id", "outcome", "ip", "tags", "latency_us")
_ROLLUP_KEY = "granularity, bucket, api_id, key_id, owner_id, outcome"
_ROLLUP_CONFLICT = f"""ON CONFLICT ({_ROLLUP_KEY})
    DO UPDATE SET count = event_rollups.count + excluded.count"""
_UPSERT_SQLITE = f"""
    INSERT INTO event_rollups (granularity, bucket, api_id, key_id, owner_id, outcome, count)
    VALUES ($1, $2, $3, $4, $5, $6, $7) {_ROLLUP_CONFLICT}"""
# Rows are upserted in primary-key order, so that writers in several processes lock shared rows in the same order
# and never deadlock.
_UPSERT_POSTGRESQL = f"""
    INSERT INTO event_rollups (granularity, bucket, api_id, key_id, owner_id, outcome, count)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
     ORDER BY 1, 2, 3, 4, 5, 6
    {_ROLLUP_CONFLICT}"""
# Only ever forward: batches from several processes may arrive out of order.
_LAST_USED = "UPDATE keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)"


PREPARE_SLICE = 200
"""Events prepared between two yields to the event loop: preparing a whole batch at once held it for several
milliseconds (the p99 latency of verifications, bench/events_verify.py); 500 at a time still held it for up to
2 ms on a busy 2-core machine (bench/loop_lag.py)."""


class _Batch:
    """A batch as storage writes it, accumulated slice by slice: event rows by table, counts per rollup bucket and
    group, and each key's newest event."""

    def __init__(self, *, partitioned: bool) -> None:
        self._partitioned = partitioned
        self.tables: dict[str, list[EventRow]] = {}
        """Event rows (values of :data:`COLUMNS`) by the table they go to: their day's partition on PostgreSQL
        (COPY writes into a partition directly, not through the parent), else ``events``."""
        self._minutes: dict[tuple[int, str, str, str, str], int] = {}
        self._newest: dict[str, int] = {}

    def add(self, rows: Iterable[EventRow]) -> None:
        minutes, newest, partitioned = self._minutes, self._newest, self._partitioned
        table: list[EventRow] = [] if partitioned else self.tables.setdefault("events", [])
        table_day = -1
        for row in rows:
            ts, key_id = row[1], row[4]
            if partitioned:
                day = ts // DAY_MS
                if day != table_day:
                    table_day = day
                    table = self.tables.setdefault(partition_name(day), [])
            table.append(row)
            group = (ts - ts % 60_000, row[3] or "", key_id or "", row[5] or "", row[6])
            minutes[group] = minutes.get(group, 0) + 1
            if key_id is not None and ts > newest.get(key_id, -1):
                newest[key_id] = ts

    async def rollups(self) -> list[RollupRow]:
        """The counts per minute, hour and day bucket and per (api, key, owner, outcome), a slice at a time (a
        batch of many keys has thousands; PostgreSQL upserts them in key order, SQLite's order does not matter)."""
        counts: dict[tuple[str, int, str, str, str, str], int] = {}
        for index, ((minute, api_id, key_id, owner_id, outcome), count) in enumerate(self._minutes.items()):
            if index and not index % PREPARE_SLICE:
                await asyncio.sleep(0)
            for granularity, size in BUCKETS:
                at = (granularity, minute - minute % size, api_id, key_id, owner_id, outcome)
                counts[at] = counts.get(at, 0) + count
        items = list(counts.items())
        rows: list[RollupRow] = []
        for start in range(0, len(items), PREPARE_SLICE):
            if start:
                await asyncio.sleep(0)
            rows.extend([(*group, count) for group, count in items[start : start + PREPARE_SLICE]])
        return rows

    def last_used(self) -> list[tuple[str, int]]:
        """``(key_id, newest ts)`` for every key in the batch, sorted by key id (the order rows are locked in)."""
        return sorted(self._newest.items())


def partition_name(day: int) -> str:
    """``events_YYYYMMDD``: the partition of the UTC day ``day`` (days since the epoch)."""
    return PARTITION_PREFIX + datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y%m%d")


def partition_day(name: str) -> int | None:
    """The day a partition named by :func:`partition_name` holds, or ``None`` for any other table."""
    digits = name.removeprefix(PARTITION_PREFIX)
    if digits == name or len(digits) != 8 or not digits.isdigit():
        return None
    try:
        moment = datetime.strptime(digits, "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp()) // 86_400


class EventWrites:
    """The event writes of one :class:`~keystile.storage.SqlStorage`."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._postgresql = driver.dialect == "postgresql"
        self._days: set[int] = set()
        """Days whose partition this process has seen to exist (PostgreSQL)."""

    async def write(self, events: Sequence[EventRow]) -> None:
        """Write one batch of event rows in one transaction (see the module docstring). Raises StorageError, and
        Conflict when an event id is already stored (a batch whose commit was not acknowledged, written again)."""
        if not events:
            return
        days = {row[1] // DAY_MS for row in events} if self._postgresql else set()
        try:
            await self._ensure_partitions(days)
            batch = _Batch(partitioned=self._postgresql)
            for start in range(0, len(events), PREPARE_SLICE):
                if start:
                    await asyncio.sleep(0)
                batch.add(events[start : start + PREPARE_SLICE])
            rollups = await batch.rollups()
            used = batch.last_used()
            async with self._driver.transaction() as tx:
                for table, table_rows in batch.tables.items():
                    await tx.copy_records(table, COLUMNS, table_rows)
                if self._postgresql:
                    await tx.execute(_UPSERT_POSTGRESQL, *_columns(rollups, 7))
                else:
                    await tx.executemany(_UPSERT_SQLITE, rollups)
                if used:
                    await tx.executemany(_LAST_USED, used)
        except StorageError:
            # A partition may have been dropped by another process's retention since we saw it: look again.
            self._days.difference_update(days)
            raise

    async def _ensure_partitions(self, days: set[int]) -> None:
        missing = sorted(days - self._days)
        if not missing:
            return
        async with self._driver.transaction() as tx:
            # Serialised: two processes creating the same partition at once would clash in the catalog.
            await tx.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            for day in missing:
                await tx.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF events"
                    f" FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
                )
        self._days.update(missing)

    async def partitions(self) -> list[str]:
        """The names of the day partitions of ``events``, oldest first (PostgreSQL; empty on SQLite)."""
        if not self._postgresql:
            return []
        rows = await self._driver.fetchall(
            """SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = CAST('events' AS REGCLASS)"""
        )
        return sorted(row["name"] for row in rows if partition_day(row["name"]) is not None)

    async def prune(self, raw_before_ms: int, rollups_before_ms: int) -> Pruned:
        """Remove raw events older than ``raw_before_ms`` and rollups older than ``rollups_before_ms`` (minute
        rollups: older than either, see ``docs/operations.md``). Raises StorageError."""
        dropped: tuple[str, ...] = ()
        deleted = 0
        if self._postgresql:
            found = await self._drop_partitions(raw_before_ms)
            if found is None:
                return Pruned(skipped=True)
            dropped = found
        else:
            # By id, whose first characters are the event's time (the primary key serves the range: SQLite keeps no
            # index on ts, migration 0004), and by ts too.
            deleted = await self._delete_chunks(
                """DELETE FROM events WHERE rowid IN (
                        SELECT rowid FROM events WHERE id < $1 AND ts < $2 LIMIT $3)""",
                first_id("evt", min(max(raw_before_ms, 0), MAX_ID_MS)),
                raw_before_ms,
            )
        rollups = 0
        for granularity, size in BUCKETS:
            cutoff = max(raw_before_ms, rollups_before_ms) if granularity == "minute" else rollups_before_ms
            # Only buckets that end before the cutoff: one that straddles it still counts kept time.
            rollups += await self._delete_chunks(
                f"""DELETE FROM event_rollups WHERE ({self._row}) IN (
                        SELECT {self._row} FROM event_rollups WHERE granularity = $1 AND bucket <= $2 LIMIT $3)""",
                granularity,
                cutoff - size,
            )
        return Pruned(events=deleted, partitions=dropped, rollups=rollups)

    @property
    def _row(self) -> str:
        """The columns that name one rollup row: PostgreSQL's tuple id; on SQLite, which stores rollups clustered by
        their primary key (no rowid, migration 0012), that key's columns."""
        return "ctid" if self._postgresql else _ROLLUP_KEY

    async def _drop_partitions(self, before_ms: int) -> tuple[str, ...] | None:
        """Drop every day partition that ends at or before ``before_ms``; ``None`` when another process holds the
        pruning lock (it is doing this very work)."""
        async with self._driver.transaction() as tx:
            row = await tx.fetchone("SELECT pg_try_advisory_xact_lock($1) AS locked", _PRUNE_LOCK)
            if row is None or not row["locked"]:
                return None
            rows = await tx.fetchall(
                """SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = CAST('events' AS REGCLASS)"""
            )
            old = sorted(
                name
                for name in (r["name"] for r in rows)
                if (day := partition_day(name)) is not None and (day + 1) * DAY_MS <= before_ms
            )
            for name in old:
                await tx.execute(f"DROP TABLE IF EXISTS {name}")
        for name in old:
            day = partition_day(name)
            self._days.discard(day if day is not None else -1)
        return tuple(old)

    async def _delete_chunks(self, sql: str, *args: Any) -> int:
        """Run a ``DELETE … LIMIT`` until it deletes less than a chunk, one transaction per chunk; the number of
        rows deleted."""
        total = 0
        while True:
            async with self._driver.transaction() as tx:
                count = await tx.execute(sql, *args, DELETE_CHUNK)
            total += count
            if count < DELETE_CHUNK:
                return total


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column arrays, for ``unnest``."""
    return [[row[i] for row in rows] for i in range(width)]

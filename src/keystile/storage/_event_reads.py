"""Reading verification events (SPEC O2) and their rollups (SPEC O3), in the SQL both dialects share.

The log is read newest first by id (event ids sort by time), so a page is one backward index range scan on the
index of the filtered column; analytics read ``event_rollups`` only, never raw events, so their cost depends on
the number of buckets asked for, not on the number of events behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keystile.core.ids import MAX_ID_MS, first_id
from keystile.core.models import EventFilter, VerificationEvent
from keystile.core.ports import Granularity, GroupBy, RollupCount
from keystile.storage._driver import Driver, Row
from keystile.storage._rows import load

EVENT_COLUMNS = "id, ts, request_id, api_id, key_id, owner_id, outcome, ip, tags, latency_us"
# The rollup column each grouping reads; '' in it stands for "none" (a NOT_FOUND has no key and no owner).
GROUP_COLUMNS = {"outcome": "outcome", "key": "key_id", "owner": "owner_id"}


class _Where:
    """Conditions and their arguments, numbered as the shared SQL's ``$n`` placeholders."""

    def __init__(self, driver: Driver) -> None:
        self._dialect = driver.dialect
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def equal(self, column: str, value: Any) -> None:
        if value is not None:
            self.conditions.append(f"{column} = {self.arg(value)}")

    def any_of(self, column: str, values: Sequence[str]) -> None:
        if self._dialect == "postgresql":
            self.conditions.append(f"{column} = ANY({self.arg(list(values))})")
        else:
            self.conditions.append(f"{column} IN ({', '.join(self.arg(v) for v in values)})")

    def filters(self, where: EventFilter, only: frozenset[str] | None) -> None:
        self.equal("api_id", where.api_id)
        self.equal("key_id", where.key_id)
        self.equal("owner_id", where.owner_id)
        self.equal("outcome", where.outcome)
        if only is not None:
            self.any_of("api_id", sorted(only))

    @property
    def clause(self) -> str:
        return f"WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


def event_from_row(row: Row) -> VerificationEvent:
    return VerificationEvent(
        id=row["id"],
        ts=int(row["ts"]),
        outcome=row["outcome"],
        latency_us=int(row["latency_us"]),
        request_id=row["request_id"],
        api_id=row["api_id"],
        key_id=row["key_id"],
        owner_id=row["owner_id"],
        ip=row["ip"],
        tags=tuple(load(row["tags"])),
    )


async def list_events(
    driver: Driver, where: EventFilter, *, before: str | None, limit: int, only: frozenset[str] | None
) -> list[VerificationEvent]:
    """Events newest first (by id), with ids below the cursor ``before``; ``only`` restricts to those APIs."""
    if only is not None and not only:
        return []
    sql = _Where(driver)
    sql.filters(where, only)
    if before is not None:
        sql.conditions.append(f"id < {sql.arg(before)}")
    # An event's id carries its time: a time range is also a range of ids, which the indexes that end with id
    # (and the primary key) serve, so SQLite keeps no index on ts (migration 0004).
    if where.since is not None:
        sql.conditions.append(f"ts >= {sql.arg(where.since)}")
        if 0 <= where.since <= MAX_ID_MS:
            sql.conditions.append(f"id >= {sql.arg(first_id('evt', where.since))}")
    if where.until is not None:
        sql.conditions.append(f"ts < {sql.arg(where.until)}")
        if 0 <= where.until <= MAX_ID_MS:
            sql.conditions.append(f"id < {sql.arg(first_id('evt', where.until))}")
    rows = await driver.fetchall(
        f"SELECT {EVENT_COLUMNS} FROM events {sql.clause} ORDER BY id DESC LIMIT {sql.arg(limit)}", *sql.args
    )
    return [event_from_row(row) for row in rows]


async def count_rollups(
    driver: Driver,
    granularity: Granularity,
    group_by: GroupBy,
    where: EventFilter,
    *,
    only: frozenset[str] | None,
    limit: int,
) -> list[RollupCount]:
    """Counts per bucket and group, oldest bucket first (then by group), from the rollups of ``granularity``.

    ``where.since`` and ``where.until`` should be bucket starts (the range is ``[since, until)``). At most
    ``limit`` counts are read: a caller that asks for one more than it will answer learns that there are more.
    """
    if only is not None and not only:
        return []
    group = GROUP_COLUMNS[group_by]
    sql = _Where(driver)
    sql.equal("granularity", granularity)
    sql.filters(where, only)
    if where.since is not None:
        sql.conditions.append(f"bucket >= {sql.arg(where.since)}")
    if where.until is not None:
        sql.conditions.append(f"bucket < {sql.arg(where.until)}")
    rows = await driver.fetchall(
        f"SELECT bucket, {group} AS grp, CAST(SUM(count) AS BIGINT) AS n FROM event_rollups"
        f"{_rollup_index(driver, where, only)} {sql.clause}"
        f" GROUP BY bucket, {group} LIMIT {sql.arg(limit)}",
        *sql.args,
    )
    counts = [RollupCount(int(row["bucket"]), row["grp"] or None, int(row["n"])) for row in rows]
    # Sorted here, not in SQL: the dialects collate text differently, and the order must not depend on them.
    counts.sort(key=lambda c: (c.bucket, c.group or ""))
    return counts


def _rollup_index(driver: Driver, where: EventFilter, only: frozenset[str] | None) -> str:
    """SQLite: the index of the most selective filter, named (``INDEXED BY``). Without statistics its planner
    preferred the primary key's range of buckets, which holds every key's rows (tens of milliseconds for one key's
    day, where the index reads a hundred rows). PostgreSQL plans from its statistics."""
    if driver.dialect != "sqlite":
        return ""
    if where.key_id is not None:
        return " INDEXED BY rollups_by_key"
    if where.owner_id is not None:
        return " INDEXED BY rollups_by_owner"
    if where.api_id is not None or only is not None:
        return " INDEXED BY rollups_by_api"
    return ""

"""Operations on balances (SPEC L3): the API's set, add and subtract, and the spends of verification, each one
atomic against concurrent spends on both databases; with ``credits_mode=redis``, the balance Redis starts from
and the write-back of what it spent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from keystile.core.ports import CreditDelta
from keystile.storage._driver import Driver, Executor, Row
from keystile.storage._owned import drop_orphan_credits
from keystile.storage._queries import Queries

CREDITS_CEILING = 2**53
"""Adding credits stops here: the largest balance every backend and every JSON client holds exactly."""


async def adjust_credits(tx: Executor, credit_id: str, op: str, amount: int, at_ms: int) -> int | None:
    # One statement each, so the change is atomic against concurrent spends on every backend.
    if op == "set":
        change = "$2"
    elif op == "add":
        change = f"CASE WHEN remaining > {CREDITS_CEILING} - $2 THEN {CREDITS_CEILING} ELSE remaining + $2 END"
    elif op == "subtract":
        change = "CASE WHEN remaining > $2 THEN remaining - $2 ELSE 0 END"
    else:
        raise ValueError(f"unknown credits operation {op!r}")
    row = await tx.fetchone(
        f"UPDATE credits SET remaining = {change}, updated_at = $3 WHERE id = $1 RETURNING remaining",
        credit_id,
        amount,
        at_ms,
    )
    return int(row["remaining"]) if row is not None else None


async def drop_credits(tx: Executor, q: Queries, credit_id: str, at_ms: int) -> list[bytes]:
    rows = await tx.fetchall(
        "UPDATE keys SET credit_id = NULL, updated_at = $2 WHERE credit_id = $1 RETURNING digest", credit_id, at_ms
    )
    await drop_orphan_credits(tx, q, [credit_id])
    return [bytes(row["digest"]) for row in rows]


async def credit_holders(tx: Executor, credit_id: str) -> list[bytes]:
    rows = await tx.fetchall("SELECT digest FROM keys WHERE credit_id = $1", credit_id)
    return [bytes(row["digest"]) for row in rows]


Statement = tuple[str, Sequence[Any]]


def spend_statements(credit_id: str, cost: int, now_ms: int, refill: tuple[int, int] | None) -> list[Statement]:
    """The conditional decrement of a balance (with its lazy refill folded in), and the read of what is left."""
    read: Statement = ("SELECT remaining FROM credits WHERE id = $1", (credit_id,))
    if refill is None:
        sql = """UPDATE credits SET remaining = remaining - $2, updated_at = $3
                  WHERE id = $1 AND remaining >= $2 RETURNING remaining"""
        return [(sql, (credit_id, cost, now_ms)), read]
    amount, moment = refill
    due = "(refilled_at IS NULL OR refilled_at < $3)"
    sql = f"""UPDATE credits
                 SET remaining = (CASE WHEN {due} THEN $4 ELSE remaining END) - $2,
                     refilled_at = CASE WHEN {due} THEN $3 ELSE refilled_at END,
                     updated_at = $5
               WHERE id = $1 AND (CASE WHEN {due} THEN $4 ELSE remaining END) >= $2
           RETURNING remaining"""
    return [(sql, (credit_id, cost, moment, amount, now_ms)), read]


class GroupCommit:
    """Spends that arrive while a batch is being written go into the next batch: one transaction, one trip to
    SQLite's writer thread and one commit for all of them (each statement still sees the ones before it, so
    balances stay exact). Measured: a commit costs ~7.5 us in WAL mode, a trip to the writer ~30-50 us."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._queue: list[tuple[Statement, Statement, asyncio.Future[tuple[Row | None, Row | None]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, spend: Statement, read: Statement) -> tuple[Row | None, Row | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Row | None, Row | None]] = loop.create_future()
        self._queue.append((spend, read, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    rows = await self._driver.batch(
                        [statement for spend, read, _ in batch for statement in (spend, read)]
                    )
                except Exception as exc:
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for index, (*_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result((rows[2 * index], rows[2 * index + 1]))
        finally:
            self._drainer = None


async def credit_state(db: Executor, credit_id: str) -> tuple[int, int | None] | None:
    row = await db.fetchone("SELECT remaining, refilled_at FROM credits WHERE id = $1", credit_id)
    if row is None:
        return None
    refilled_at = row["refilled_at"]
    return int(row["remaining"]), None if refilled_at is None else int(refilled_at)


async def write_back_credits(driver: Driver, deltas: Sequence[CreditDelta], at_ms: int) -> None:
    # Delta-based, so that a balance set or added to by an API call meanwhile keeps that change. A period's
    # spends count unless the database has refilled since; a refill Redis did first is applied first.
    refill_due = "(CAST($4 AS BIGINT) >= 0 AND COALESCE(refilled_at, -1) < CAST($3 AS BIGINT))"
    sql = f"""UPDATE credits
                 SET remaining = CASE
                         WHEN {refill_due} THEN
                             CASE WHEN CAST($4 AS BIGINT) > CAST($2 AS BIGINT) THEN $4 - $2 ELSE 0 END
                         WHEN COALESCE(refilled_at, -1) <= CAST($3 AS BIGINT) THEN
                             CASE WHEN remaining > CAST($2 AS BIGINT) THEN remaining - $2 ELSE 0 END
                         ELSE remaining END,
                     refilled_at = CASE WHEN {refill_due} THEN CAST($3 AS BIGINT) ELSE refilled_at END,
                     updated_at = CAST($5 AS BIGINT)
               WHERE id = $1"""
    rows = [
        (d.credit_id, d.spent, -1 if d.epoch is None else d.epoch, -1 if d.refill is None else d.refill, at_ms)
        for d in deltas
    ]
    async with driver.transaction() as tx:
        await tx.executemany(sql, rows)

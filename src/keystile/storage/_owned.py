"""What keys and identities both own: a balance (a row of ``credits``, SPEC L3) and rate-limit rows (SPEC L1).

A balance is a row of its own that owners link to (a rerolled pair of keys shares one), so it is written in
place while the same owner keeps it and deleted once nothing links to it any more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from keystile.core.models import Credits, Identity, Key
from keystile.storage._driver import Executor
from keystile.storage._queries import CHUNK, Queries
from keystile.storage._rows import CREDIT_COLUMNS, credits_from_row, ratelimit_row_id


def credit_params(credit: Any, at_ms: int) -> tuple[Any, ...]:
    """A balance's values in the order the ``credits`` statements number them, ``updated_at`` last."""
    refill = credit.refill
    return (
        credit.id,
        credit.remaining,
        refill.amount if refill else None,
        refill.interval if refill else None,
        refill.day if refill else None,
        credit.refilled_at,
        at_ms,
    )


async def locked_credits(tx: Executor, credit_id: str) -> Credits | None:
    """A balance read afresh and locked until the transaction ends (PostgreSQL).

    Writers of a key or identity rewrite its balance; a value read before a concurrent spend committed
    would give that spend back. Locking the balance makes spends wait for this transaction instead.
    """
    row = await tx.fetchone(
        f"SELECT id AS credit_id, {CREDIT_COLUMNS} FROM credits c WHERE c.id = $1 FOR UPDATE", credit_id
    )
    return credits_from_row(row) if row is not None else None


async def write_credits(tx: Executor, old_credit: str | None, credits: Credits | None, at_ms: int) -> None:
    """Write the balance an owner (key or identity) links to: in place if it is the same, else as new."""
    if credits is None:
        return
    if old_credit == credits.id:
        await tx.execute(
            """UPDATE credits SET remaining = $2, refill_amount = $3, refill_interval = $4,
                      refill_day = $5, refilled_at = $6, updated_at = $7 WHERE id = $1""",
            *credit_params(credits, at_ms),
        )
    else:
        await tx.execute(
            """INSERT INTO credits (id, remaining, refill_amount, refill_interval, refill_day,
                                    refilled_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            *credit_params(credits, at_ms),
        )


async def drop_orphan_credits(tx: Executor, q: Queries, credit_ids: Sequence[str]) -> None:
    """Delete those of ``credit_ids`` that no key and no identity links to any more."""
    for start in range(0, len(credit_ids), CHUNK):
        where, args = q.any_of("id", credit_ids[start : start + CHUNK], 1)
        await tx.execute(
            f"""DELETE FROM credits WHERE {where}
                  AND NOT EXISTS (SELECT 1 FROM keys k WHERE k.credit_id = credits.id)
                  AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.credit_id = credits.id)""",
            *args,
        )


async def insert_ratelimits(tx: Executor, owners: Iterable[Key | Identity], column: str = "key_id") -> None:
    """The rate-limit rows of keys (``column`` ``key_id``) or identities (``identity_id``)."""
    rows = [
        (ratelimit_row_id(owner.id, position), owner.id, rl.name, rl.limit, rl.duration_ms, rl.auto_apply)
        for owner in owners
        for position, rl in enumerate(owner.ratelimits)
    ]
    if rows:
        await tx.executemany(
            f"""INSERT INTO ratelimits (id, {column}, name, "limit", duration_ms, auto_apply)
                VALUES ($1, $2, $3, $4, $5, $6)""",
            rows,
        )

"""The audit log (SPEC A1, A2): appended in the transaction of the change it records, hash-chained in commit order,
read newest first by ``seq`` and walked oldest first to verify the chain.

An entry is appended in one statement that follows the head (the last entry's ``seq`` and ``hash``, the one row
of ``audit_head``) and moves it, the hash computed in the database from the canonical text around the digits of
``seq`` (:meth:`~keystile.core.models.AuditEntry.canonical_around_seq`), so that no second trip is needed to learn
``seq`` first. On PostgreSQL the statement's update of the head locks its row until the transaction ends:
concurrent writers, on any number of servers, queue there and make one chain in commit order. On SQLite
``BEGIN IMMEDIATE`` already holds the database's one write lock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keystile.core.auditchain import GENESIS, chain_hash
from keystile.core.models import AuditEntry, AuditFilter
from keystile.storage._driver import Executor
from keystile.storage._queries import Queries
from keystile.storage._rows import AUDIT_COLUMNS, audit_from_row, dump

BACKFILL_PAGE = 500
"""Entries :func:`chain_existing` reads at a time."""


async def append_audit(tx: Executor, q: Queries, entry: AuditEntry) -> AuditEntry:
    """Append ``entry`` after the head, in one statement; returns it with its ``seq`` and hashes."""
    row = await tx.fetchone(
        q.append_audit,
        entry.id, entry.ts, entry.actor, entry.action, entry.target, entry.ip, entry.user_agent, dump(entry.changes),
        *entry.canonical_around_seq(),
    )  # fmt: skip
    assert row is not None  # the head row is written by the migration that made the table
    return replace(entry, seq=row["seq"], prev_hash=row["prev_hash"], hash=row["hash"])


async def list_audit(db: Executor, where: AuditFilter, *, before: int | None, limit: int) -> list[AuditEntry]:
    conditions: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if before is not None:
        conditions.append(f"seq < {arg(before)}")
    for column in ("actor", "action", "target"):
        value = getattr(where, column)
        if value is not None:
            conditions.append(f"{column} = {arg(value)}")
    if where.since is not None:
        conditions.append(f"ts >= {arg(where.since)}")
    if where.until is not None:
        conditions.append(f"ts < {arg(where.until)}")
    clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await db.fetchall(
        f"SELECT {AUDIT_COLUMNS} FROM audit_log {clause} ORDER BY seq DESC LIMIT {arg(limit)}",
        *args,
    )
    return [audit_from_row(row) for row in rows]


async def audit_chain(db: Executor, *, from_seq: int, limit: int) -> list[AuditEntry]:
    """Entries from ``from_seq`` on, oldest first (a page of the walk that verifies the chain)."""
    rows = await db.fetchall(
        f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2", from_seq, limit
    )
    return [audit_from_row(row) for row in rows]


async def audit_entry(db: Executor, seq: int) -> AuditEntry | None:
    row = await db.fetchone(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq = $1", seq)
    return audit_from_row(row) if row is not None else None


async def audit_head(db: Executor) -> tuple[int, str]:
    """The head as ``audit_head`` records it: ``(0, 64 zeros)`` before the first entry."""
    row = await db.fetchone("SELECT seq, hash FROM audit_head WHERE id = 1")
    assert row is not None
    return int(row["seq"]), str(row["hash"])


async def chain_existing(tx: Executor) -> None:
    """Chain the entries written before the log was chained (migration 5): number them 1, 2, 3, ... in their
    ``seq`` order (closing the gaps rolled-back transactions left) and give each its hashes, a page at a time.

    Renumbering only ever lowers a ``seq`` to one already vacated, so no two rows clash on the way.
    """
    seq, prev, digest = 0, None, GENESIS
    after = 0
    while rows := await tx.fetchall(
        f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", after, BACKFILL_PAGE
    ):
        updates = []
        for row in rows:
            after = int(row["seq"])
            seq += 1
            entry = replace(audit_from_row(row), seq=seq)
            prev, digest = digest, chain_hash(digest, entry)
            updates.append((seq, prev, digest, after))
        await tx.executemany("UPDATE audit_log SET seq = $1, prev_hash = $2, hash = $3 WHERE seq = $4", updates)
    await tx.execute("UPDATE audit_head SET seq = $1, prev_hash = $2, hash = $3 WHERE id = 1", seq, prev, digest)

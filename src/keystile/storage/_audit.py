"""The audit log (SPEC A1): appended in the transaction of the change it records, read newest first by ``seq``."""

from __future__ import annotations

from typing import Any

from keystile.core.models import AuditEntry, AuditFilter
from keystile.storage._driver import Executor
from keystile.storage._rows import audit_from_row, dump


async def append_audit(tx: Executor, entry: AuditEntry) -> AuditEntry:
    row = await tx.fetchone(
        """INSERT INTO audit_log (id, ts, actor, action, target, ip, user_agent, changes)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq""",
        entry.id,
        entry.ts,
        entry.actor,
        entry.action,
        entry.target,
        entry.ip,
        entry.user_agent,
        dump(entry.changes),
    )
    assert row is not None
    return AuditEntry(
        entry.id, entry.ts, entry.actor, entry.action, entry.target, entry.ip, entry.user_agent,
        entry.changes, row["seq"],
    )  # fmt: skip


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
        "SELECT seq, id, ts, actor, action, target, ip, user_agent, changes FROM audit_log "
        f"{clause} ORDER BY seq DESC LIMIT {arg(limit)}",
        *args,
    )
    return [audit_from_row(row) for row in rows]

"""The audit log (SPEC A1, A2): one entry as the API shows it."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from keystile.core.models import AuditEntry
from keystile.schemas.common import TimeOut, utc


class AuditOut(Struct):
    id: str
    seq: int
    ts: TimeOut
    actor: str
    action: str
    target: str
    ip: str | None
    user_agent: str | None
    changes: dict[str, Any]
    hash: str | None = None
    """The entry's link in the hash chain (lowercase hex SHA-256): what ``keystile audit verify`` checks, and
    ``keystile audit head`` prints for the newest entry. Absent from servers older than the chain."""


def audit_out(entry: AuditEntry) -> AuditOut:
    assert entry.seq is not None
    return AuditOut(
        entry.id,
        entry.seq,
        utc(entry.ts),
        entry.actor,
        entry.action,
        entry.target,
        entry.ip,
        entry.user_agent,
        entry.changes,
        entry.hash,
    )

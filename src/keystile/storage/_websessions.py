"""Browser sessions and one-time portal links (SPEC D1, D2), by the SHA-256 of their id."""

from __future__ import annotations

from keystile.core.models import WebSession
from keystile.storage._driver import Executor, Row

_COLUMNS = "digest, kind, subject, csrf, created_at, seen_at, expires_at"


def _session(row: Row) -> WebSession:
    return WebSession(
        digest=bytes(row["digest"]),
        kind=row["kind"],
        subject=row["subject"],
        csrf=row["csrf"],
        created_at=row["created_at"],
        seen_at=row["seen_at"],
        expires_at=row["expires_at"],
    )


async def put(tx: Executor, s: WebSession) -> None:
    await tx.execute(
        f"INSERT INTO web_sessions ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        s.digest,
        s.kind,
        s.subject,
        s.csrf,
        s.created_at,
        s.seen_at,
        s.expires_at,
    )


async def get(db: Executor, digest: bytes, at_ms: int) -> WebSession | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM web_sessions WHERE digest = $1 AND expires_at > $2", digest, at_ms)
    return _session(row) if row is not None else None


async def take(tx: Executor, digest: bytes, at_ms: int) -> WebSession | None:
    row = await tx.fetchone(f"DELETE FROM web_sessions WHERE digest = $1 RETURNING {_COLUMNS}", digest)
    if row is None:
        return None
    found = _session(row)
    return found if found.expires_at > at_ms else None


async def touch(tx: Executor, digest: bytes, seen_at: int, expires_at: int) -> None:
    await tx.execute(
        "UPDATE web_sessions SET seen_at = $2, expires_at = $3 WHERE digest = $1", digest, seen_at, expires_at
    )


async def drop(tx: Executor, digest: bytes | None, expired_at: int | None) -> int:
    if digest is not None:
        return await tx.execute("DELETE FROM web_sessions WHERE digest = $1", digest)
    return await tx.execute("DELETE FROM web_sessions WHERE expires_at <= $1", expired_at or 0)

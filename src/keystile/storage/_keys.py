"""Keys (SPEC K2-K4, R2): their rows, with their balance link and rate-limit rows, written in a transaction, and
the reads of the management API. The read for verification is :meth:`SqlStorage.load_for_verify`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from keystile.core.models import Key, KeyFilter
from keystile.errors import Conflict
from keystile.storage._driver import Executor
from keystile.storage._owned import (
    credit_params,
    drop_orphan_credits,
    insert_ratelimits,
    locked_credits,
    write_credits,
)
from keystile.storage._queries import CHUNK, Queries
from keystile.storage._rows import dump, key_from_row


async def get_key_for_update(tx: Executor, q: Queries, key_id: str) -> Key | None:
    """The key, locked (with its balance, on PostgreSQL) until the transaction ends."""
    row = await tx.fetchone(f"{q.key_select} WHERE k.id = $1{q.for_update}", key_id)
    if row is None:
        return None
    key = key_from_row(row)
    if key.credits is not None and q.dialect == "postgresql":
        key = replace(key, credits=await locked_credits(tx, key.credits.id))
    return key


async def insert_keys(tx: Executor, q: Queries, keys: Sequence[Key]) -> None:
    await _refuse_duplicates(tx, q, keys)
    await _insert_credits(tx, keys)
    await _insert_key_rows(tx, keys)


KEY_ROW_COLUMNS = (
    "id", "api_id", "digest", "start", "name", "owner_id", "meta", "permissions", "roles", "created_at",
    "updated_at", "expires_at", "enabled", "revoked_at", "last_used_at", "credit_id", "ip_allowlist",
    "rotated_from", "rotated_to",
)  # fmt: skip


def _key_row(key: Key) -> tuple[Any, ...]:
    """A key's values in the order of :data:`KEY_ROW_COLUMNS`."""
    return (
        key.id, key.api_id, key.digest, key.start, key.name, key.owner_id, _json(key.meta),
        _json(key.permissions), _json(key.roles), key.created_at, key.updated_at,
        key.expires_at, key.enabled, key.revoked_at, key.last_used_at,
        key.credits.id if key.credits else None, _json(key.ip_allowlist), key.rotated_from,
        key.rotated_to,
    )  # fmt: skip


def _json(value: Any) -> str:
    # Empty lists and objects are most of them (an import writes a million rows): no encoder call for those.
    if not value:
        return "{}" if isinstance(value, dict) else "[]"
    return dump(list(value) if isinstance(value, tuple) else value)


async def _insert_key_rows(tx: Executor, keys: Sequence[Key]) -> None:
    """The rows of keys and of their rate limits; each key links to its balance, which must exist."""
    marks = ", ".join(f"${i}" for i in range(1, len(KEY_ROW_COLUMNS) + 1))
    await tx.executemany(
        f"INSERT INTO keys ({', '.join(KEY_ROW_COLUMNS)}) VALUES ({marks})", [_key_row(key) for key in keys]
    )
    await insert_ratelimits(tx, keys)


async def _insert_credits(tx: Executor, keys: Sequence[Key]) -> None:
    credits = [credit_params(credit, key.updated_at) for key in keys if (credit := key.credits) is not None]
    if credits:
        await tx.executemany(
            """INSERT INTO credits (id, remaining, refill_amount, refill_interval, refill_day, refilled_at,
                                    updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            credits,
        )


async def find_digests(tx: Executor, q: Queries, digests: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
    """Which of ``digests`` a key has already, in any API: ``{digest: (key id, api id)}``."""
    found: dict[bytes, tuple[str, str]] = {}
    if q.dialect == "postgresql":  # one round trip, whatever the number
        rows = await tx.fetchall("SELECT digest, id, api_id FROM keys WHERE digest = ANY($1)", list(digests))
        return {bytes(row["digest"]): (row["id"], row["api_id"]) for row in rows}
    for start in range(0, len(digests), CHUNK):
        where, args = q.any_of("digest", digests[start : start + CHUNK], 1)
        for row in await tx.fetchall(f"SELECT digest, id, api_id FROM keys WHERE {where}", *args):
            found[bytes(row["digest"])] = (row["id"], row["api_id"])
    return found


async def import_keys(tx: Executor, keys: Sequence[Key]) -> None:
    """Insert keys whose digests the caller found free (:func:`find_digests`) in one bulk write (``COPY`` on
    PostgreSQL): an import writes up to a thousand keys a call, a million in one run (SPEC R4, P4). A digest
    taken meanwhile by a concurrent writer still fails the unique index: :class:`Conflict`."""
    await _insert_credits(tx, keys)
    await tx.copy_records("keys", KEY_ROW_COLUMNS, [_key_row(key) for key in keys])
    await insert_ratelimits(tx, keys)


async def _refuse_duplicates(tx: Executor, q: Queries, keys: Sequence[Key]) -> None:
    seen: dict[bytes, int] = {}
    for index, key in enumerate(keys):
        if key.digest in seen:
            raise Conflict("the same key appears twice in the request", code="duplicate_key", index=index)
        seen[key.digest] = index
    digests = list(seen)
    for start in range(0, len(digests), CHUNK):
        where, args = q.any_of("digest", digests[start : start + CHUNK], 1)
        rows = await tx.fetchall(f"SELECT digest FROM keys WHERE {where}", *args)
        if rows:
            index = min(seen[bytes(row["digest"])] for row in rows)
            raise Conflict("this key already exists", code="duplicate_key", index=index)


async def update_key(tx: Executor, q: Queries, key: Key) -> None:
    row = await tx.fetchone("SELECT credit_id FROM keys WHERE id = $1", key.id)
    old_credit = row["credit_id"] if row is not None else None
    new_credit = key.credits.id if key.credits is not None else None
    await write_credits(tx, old_credit, key.credits, key.updated_at)
    await tx.execute(
        """UPDATE keys SET name = $2, owner_id = $3, meta = $4, permissions = $5, roles = $6, updated_at = $7,
                  expires_at = $8, enabled = $9, revoked_at = $10, last_used_at = $11, credit_id = $12,
                  ip_allowlist = $13, rotated_from = $14, rotated_to = $15 WHERE id = $1""",
        key.id, key.name, key.owner_id, dump(key.meta), dump(list(key.permissions)), dump(list(key.roles)),
        key.updated_at, key.expires_at, key.enabled, key.revoked_at, key.last_used_at, new_credit,
        dump(list(key.ip_allowlist)), key.rotated_from, key.rotated_to,
    )  # fmt: skip
    if old_credit is not None and old_credit != new_credit:
        await drop_orphan_credits(tx, q, [old_credit])
    await tx.execute("DELETE FROM ratelimits WHERE key_id = $1", key.id)
    await insert_ratelimits(tx, [key])


async def delete_key(tx: Executor, q: Queries, key_id: str) -> bool:
    row = await tx.fetchone("SELECT credit_id FROM keys WHERE id = $1", key_id)
    if row is None:
        return False
    await tx.execute("DELETE FROM keys WHERE id = $1", key_id)
    if row["credit_id"] is not None:
        await drop_orphan_credits(tx, q, [row["credit_id"]])
    return True


async def reroll_key(tx: Executor, q: Queries, old: Key, new: Key) -> None:
    await tx.execute(
        "UPDATE keys SET expires_at = $2, rotated_to = $3, updated_at = $4 WHERE id = $1",
        old.id,
        old.expires_at,
        old.rotated_to,
        old.updated_at,
    )
    # The new key links to the old key's balance rather than getting a copy: credits move, exactly once.
    await _refuse_duplicates(tx, q, [new])
    await _insert_key_rows(tx, [new])


# -- reads outside a transaction --------------------------------------------------------------------------------


async def get_key(db: Executor, q: Queries, key_id: str) -> Key | None:
    row = await db.fetchone(f"{q.key_select} WHERE k.id = $1", key_id)
    return key_from_row(row) if row is not None else None


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_keys(
    db: Executor, q: Queries, api_id: str, where: KeyFilter, *, at_ms: int, after: str | None, limit: int
) -> list[Key]:
    conditions: list[str] = ["k.api_id = $1"]
    args: list[Any] = [api_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if after is not None:
        conditions.append(f"k.id < {arg(after)}")
    if where.owner_id is not None:
        conditions.append(f"k.owner_id = {arg(where.owner_id)}")
    if where.enabled is not None:
        conditions.append(f"k.enabled = {arg(where.enabled)}")
    if where.revoked is not None:
        conditions.append("k.revoked_at IS NOT NULL" if where.revoked else "k.revoked_at IS NULL")
    if where.expired is not None:
        now = arg(at_ms)
        conditions.append(
            f"(k.expires_at IS NOT NULL AND k.expires_at <= {now})"
            if where.expired
            else f"(k.expires_at IS NULL OR k.expires_at > {now})"
        )
    if where.created_before is not None:
        conditions.append(f"k.created_at < {arg(where.created_before)}")
    if where.created_since is not None:
        conditions.append(f"k.created_at >= {arg(where.created_since)}")
    if where.search:
        pattern = arg(_like_pattern(where.search))
        conditions.append(
            f"(lower(coalesce(k.name, '')) LIKE {pattern} ESCAPE '\\' OR lower(k.start) LIKE {pattern} ESCAPE '\\')"
        )
    sql = f"{q.key_select} WHERE {' AND '.join(conditions)} ORDER BY k.id DESC LIMIT {arg(limit)}"
    return [key_from_row(row) for row in await db.fetchall(sql, *args)]


async def count_keys(db: Executor, api_id: str) -> int:
    row = await db.fetchone("SELECT count(*) AS n FROM keys WHERE api_id = $1", api_id)
    return int(row["n"]) if row is not None else 0

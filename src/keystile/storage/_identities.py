"""Identities (SPEC K5): the owner of keys, with a balance and rate limits that its keys share."""

from __future__ import annotations

from dataclasses import replace

from keystile.core.models import Identity
from keystile.storage._driver import Executor
from keystile.storage._owned import drop_orphan_credits, insert_ratelimits, locked_credits, write_credits
from keystile.storage._queries import Queries
from keystile.storage._rows import dump, identity_from_row


async def get_identity_for_update(tx: Executor, q: Queries, owner_id: str) -> Identity | None:
    """The identity of an owner, locked (with its balance, on PostgreSQL) until the transaction ends."""
    row = await tx.fetchone(f"{q.identity_select}{q.identity_for_update}", owner_id)
    if row is None:
        return None
    identity = identity_from_row(row)
    assert identity is not None
    if identity.credits is not None and q.dialect == "postgresql":
        identity = replace(identity, credits=await locked_credits(tx, identity.credits.id))
    return identity


async def get_identity(db: Executor, q: Queries, owner_id: str) -> Identity | None:
    row = await db.fetchone(q.identity_select, owner_id)
    return identity_from_row(row) if row is not None else None


async def list_identities(
    db: Executor,
    q: Queries,
    *,
    after: str | None,
    limit: int,
    search: str | None = None,
    identity_id: str | None = None,
) -> list[Identity]:
    """Identities newest first (by id), after the cursor id ``after``; ``search`` keeps the owner ids that start
    with it, ``identity_id`` the one identity of that id."""
    select = q.identity_select.rpartition(" WHERE ")[0]
    conditions: list[str] = []
    args: list[object] = []
    if after is not None:
        args.append(after)
        conditions.append(f"i.id < ${len(args)}")
    if identity_id is not None:
        args.append(identity_id)
        conditions.append(f"i.id = ${len(args)}")
    if search:
        # A prefix match, exact in case on both databases (SQLite's LIKE ignores ASCII case, PostgreSQL's does not).
        args.append(search)
        conditions.append(f"substr(i.owner_id, 1, length(${len(args)})) = ${len(args)}")
    args.append(limit)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await db.fetchall(f"{select}{where} ORDER BY i.id DESC LIMIT ${len(args)}", *args)
    found = [identity_from_row(row) for row in rows]
    return [identity for identity in found if identity is not None]


async def insert_identity(tx: Executor, identity: Identity) -> None:
    await write_credits(tx, None, identity.credits, identity.updated_at)
    await tx.execute(
        """INSERT INTO identities (id, owner_id, meta, credit_id, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        identity.id,
        identity.owner_id,
        dump(identity.meta),
        identity.credits.id if identity.credits is not None else None,
        identity.created_at,
        identity.updated_at,
    )
    await insert_ratelimits(tx, [identity], "identity_id")


async def update_identity(tx: Executor, q: Queries, identity: Identity) -> None:
    row = await tx.fetchone("SELECT credit_id FROM identities WHERE id = $1", identity.id)
    old_credit = row["credit_id"] if row is not None else None
    new_credit = identity.credits.id if identity.credits is not None else None
    await write_credits(tx, old_credit, identity.credits, identity.updated_at)
    await tx.execute(
        "UPDATE identities SET meta = $2, credit_id = $3, updated_at = $4 WHERE id = $1",
        identity.id,
        dump(identity.meta),
        new_credit,
        identity.updated_at,
    )
    if old_credit is not None and old_credit != new_credit:
        await drop_orphan_credits(tx, q, [old_credit])
    await tx.execute("DELETE FROM ratelimits WHERE identity_id = $1", identity.id)
    await insert_ratelimits(tx, [identity], "identity_id")


async def delete_identity(tx: Executor, q: Queries, owner_id: str) -> bool:
    row = await tx.fetchone("SELECT id, credit_id FROM identities WHERE owner_id = $1", owner_id)
    if row is None:
        return False
    await tx.execute("DELETE FROM identities WHERE id = $1", row["id"])  # its rate limits cascade
    if row["credit_id"] is not None:
        await drop_orphan_credits(tx, q, [row["credit_id"]])
    return True

"""APIs (SPEC K1) and their roles (SPEC V3): writes in a transaction, and the reads of the management API."""

from __future__ import annotations

from typing import Any

from keystile.core.models import Api, Role
from keystile.storage._driver import Executor
from keystile.storage._owned import drop_orphan_credits
from keystile.storage._queries import Queries
from keystile.storage._rows import API_COLUMNS, api_from_row, api_params, dump, load, role_from_row

_ROLE_COLUMNS = "api_id, name, permissions, created_at, updated_at"


async def get_api(db: Executor, api_id: str) -> Api | None:
    row = await db.fetchone(f"SELECT {API_COLUMNS} FROM apis WHERE id = $1", api_id)
    return api_from_row(row) if row is not None else None


async def insert_api(tx: Executor, api: Api) -> None:
    await tx.execute(
        f"INSERT INTO apis ({API_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", *api_params(api)
    )


async def update_api(tx: Executor, api: Api) -> None:
    await tx.execute(
        """UPDATE apis SET name = $2, prefix = $3, created_at = $4, updated_at = $5, default_ratelimits = $6,
                  max_key_age_days = $7, recoverable = $8, ip_allowlist = $9, expire_stale_after_days = $10
            WHERE id = $1""",
        *api_params(api),
    )


async def delete_api(tx: Executor, q: Queries, api_id: str) -> list[bytes]:
    rows = await tx.fetchall("SELECT digest, credit_id FROM keys WHERE api_id = $1", api_id)
    await tx.execute("DELETE FROM apis WHERE id = $1", api_id)
    await drop_orphan_credits(tx, q, [row["credit_id"] for row in rows if row["credit_id"] is not None])
    return [bytes(row["digest"]) for row in rows]


async def list_apis(
    db: Executor, q: Queries, *, after: str | None, limit: int, only: frozenset[str] | None
) -> list[Api]:
    conditions: list[str] = ["id <> 'api_root'"]
    args: list[Any] = []
    if after is not None:
        args.append(after)
        conditions.append(f"id < ${len(args)}")
    if only is not None:
        if not only:
            return []
        where, extra = q.any_of("id", sorted(only), len(args) + 1)
        args.extend(extra)
        conditions.append(where)
    args.append(limit)
    rows = await db.fetchall(
        f"SELECT {API_COLUMNS} FROM apis WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    return [api_from_row(row) for row in rows]


# -- roles ------------------------------------------------------------------------------------------------------


async def get_role(tx: Executor, api_id: str, name: str) -> Role | None:
    row = await tx.fetchone(f"SELECT {_ROLE_COLUMNS} FROM roles WHERE api_id = $1 AND name = $2", api_id, name)
    return role_from_row(row) if row is not None else None


async def put_role(tx: Executor, role: Role) -> None:
    await tx.execute(
        """INSERT INTO roles (api_id, name, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (api_id, name) DO UPDATE SET permissions = excluded.permissions,
                                                  updated_at = excluded.updated_at""",
        role.api_id,
        role.name,
        dump(list(role.permissions)),
        role.created_at,
        role.updated_at,
    )


async def delete_role(tx: Executor, api_id: str, name: str) -> list[bytes]:
    await tx.execute("DELETE FROM roles WHERE api_id = $1 AND name = $2", api_id, name)
    # Text search narrows the candidates (the JSON encoding of the name); the exact test is done here.
    rows = await tx.fetchall(
        "SELECT id, digest, roles FROM keys WHERE api_id = $1 AND CAST(roles AS TEXT) LIKE $2",
        api_id,
        "%" + dump(name) + "%",
    )
    changed = []
    for row in rows:
        roles = [r for r in load(row["roles"]) if r != name]
        if len(roles) != len(load(row["roles"])):
            await tx.execute("UPDATE keys SET roles = $2 WHERE id = $1", row["id"], dump(roles))
            changed.append(bytes(row["digest"]))
    return changed


async def list_roles(db: Executor, api_id: str) -> list[Role]:
    rows = await db.fetchall(f"SELECT {_ROLE_COLUMNS} FROM roles WHERE api_id = $1 ORDER BY name", api_id)
    return [role_from_row(row) for row in rows]


async def mark_imported_by_digest(tx: Executor, api_id: str) -> bool:
    """Record that keys were imported into the API by digest (SPEC K2); whether that is news."""
    changed = await tx.execute(
        "UPDATE apis SET imported_by_digest = $2 WHERE id = $1 AND NOT imported_by_digest", api_id, True
    )
    return changed > 0


async def digest_import_prefixes(db: Executor) -> frozenset[str]:
    """The prefixes of the APIs into which keys were imported by digest."""
    rows = await db.fetchall("SELECT DISTINCT prefix FROM apis WHERE imported_by_digest")
    return frozenset(row["prefix"] for row in rows)

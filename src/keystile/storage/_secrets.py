"""Recoverable keys (SPEC K3): their sealed plain text and the wrapped data keys that seal it.

Nothing here can read a key: rows hold AES-256-GCM ciphertext and wrapped data keys only. Sealing and opening
happen in the service, which holds the master key.
"""

from __future__ import annotations

from collections.abc import Sequence

from keystile.core.models import DataKey, KeySecret, SigningKey
from keystile.storage._driver import Executor, Row

_DATA_KEY_COLUMNS = "id, master_id, wrapped, created_at, updated_at"


def _data_key(row: Row) -> DataKey:
    return DataKey(
        id=row["id"],
        master_id=row["master_id"],
        wrapped=bytes(row["wrapped"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_key_secrets(tx: Executor, secrets: Sequence[KeySecret]) -> None:
    if secrets:
        await tx.executemany(
            "INSERT INTO key_secrets (key_id, data_key_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)",
            [(s.key_id, s.data_key_id, s.nonce, s.ciphertext) for s in secrets],
        )


async def get_key_secret(db: Executor, key_id: str) -> KeySecret | None:
    row = await db.fetchone("SELECT key_id, data_key_id, nonce, ciphertext FROM key_secrets WHERE key_id = $1", key_id)
    if row is None:
        return None
    return KeySecret(row["key_id"], row["data_key_id"], bytes(row["nonce"]), bytes(row["ciphertext"]))


async def insert_data_key(tx: Executor, data_key: DataKey) -> None:
    await tx.execute(
        f"INSERT INTO data_keys ({_DATA_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)",
        data_key.id,
        data_key.master_id,
        data_key.wrapped,
        data_key.created_at,
        data_key.updated_at,
    )


async def get_data_key(db: Executor, data_key_id: str) -> DataKey | None:
    row = await db.fetchone(f"SELECT {_DATA_KEY_COLUMNS} FROM data_keys WHERE id = $1", data_key_id)
    return _data_key(row) if row is not None else None


async def count_data_keys(db: Executor) -> dict[str, int]:
    rows = await db.fetchall("SELECT master_id, count(*) AS n FROM data_keys GROUP BY master_id ORDER BY master_id")
    return {row["master_id"]: int(row["n"]) for row in rows}


async def newest_data_key(db: Executor, master_id: str) -> DataKey | None:
    row = await db.fetchone(
        f"SELECT {_DATA_KEY_COLUMNS} FROM data_keys WHERE master_id = $1 ORDER BY id DESC LIMIT 1", master_id
    )
    return _data_key(row) if row is not None else None


async def data_keys_to_rewrap(tx: Executor, master_id: str, *, after: str, limit: int) -> list[DataKey]:
    rows = await tx.fetchall(
        f"SELECT {_DATA_KEY_COLUMNS} FROM data_keys WHERE master_id <> $1 AND id > $2 ORDER BY id LIMIT $3",
        master_id,
        after,
        limit,
    )
    return [_data_key(row) for row in rows]


async def rewrap_data_key(tx: Executor, data_key_id: str, old_master_id: str, new: DataKey) -> bool:
    changed = await tx.execute(
        "UPDATE data_keys SET master_id = $3, wrapped = $4, updated_at = $5 WHERE id = $1 AND master_id = $2",
        data_key_id,
        old_master_id,
        new.master_id,
        new.wrapped,
        new.updated_at,
    )
    return changed > 0


# -- token signing keys (SPEC T2) ---------------------------------------------------------------------------------

_SIGNING_COLUMNS = "kid, created_at, retired_at, not_after, public_key, data_key_id, nonce, ciphertext"


def _signing_key(row: Row) -> SigningKey:
    return SigningKey(
        kid=row["kid"],
        created_at=row["created_at"],
        retired_at=row["retired_at"],
        not_after=row["not_after"],
        public_key=bytes(row["public_key"]),
        data_key_id=row["data_key_id"],
        nonce=bytes(row["nonce"]),
        ciphertext=bytes(row["ciphertext"]),
    )


async def insert_signing_key(tx: Executor, key: SigningKey) -> None:
    await tx.execute(
        f"INSERT INTO signing_keys ({_SIGNING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key.kid,
        key.created_at,
        key.retired_at,
        key.not_after,
        key.public_key,
        key.data_key_id,
        key.nonce,
        key.ciphertext,
    )


async def retire_signing_keys(tx: Executor, *, at: int, not_after: int, keep: str) -> list[str]:
    await tx.execute("DELETE FROM signing_keys WHERE not_after IS NOT NULL AND not_after <= $1", at)
    rows = await tx.fetchall("SELECT kid FROM signing_keys WHERE retired_at IS NULL AND kid <> $1 ORDER BY kid", keep)
    await tx.execute(
        "UPDATE signing_keys SET retired_at = $1, not_after = $2 WHERE retired_at IS NULL AND kid <> $3",
        at,
        not_after,
        keep,
    )
    return [row["kid"] for row in rows]


async def list_signing_keys(db: Executor) -> list[SigningKey]:
    rows = await db.fetchall(
        f"SELECT {_SIGNING_COLUMNS} FROM signing_keys"
        " ORDER BY created_at, CASE WHEN retired_at IS NULL THEN 1 ELSE 0 END, kid"  # the one that signs last
    )
    return [_signing_key(row) for row in rows]

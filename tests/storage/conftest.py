"""Builders for the storage contract suite: records with ids that sort in the order they were made.

Ids carry their creation time (``core.ids``), so newest-first order is only defined between records made at
different milliseconds; :class:`Records` hands out strictly increasing times for that reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from keystile.core import keys as keyformat
from keystile.core.ids import new_id
from keystile.core.models import Api, AuditEntry, Key, Role
from keystile.storage import SqlStorage

T0 = 1_800_000_000_000


class Records:
    """Makes records and writes them through the storage under test."""

    def __init__(self, storage: SqlStorage) -> None:
        self.storage = storage
        self._ms = T0
        self.plain: dict[str, str] = {}
        """Every key string generated so far, by key id (for the plain-text scans)."""

    def tick(self) -> int:
        """A time one millisecond after the previous one."""
        self._ms += 1
        return self._ms

    def api(self, **fields: Any) -> Api:
        at = self.tick()
        return Api(
            **{"id": new_id("api", at), "name": "an api", "prefix": "ks", "created_at": at, "updated_at": at, **fields}
        )

    def key(self, api_id: str, *, prefix: str = "ks", at: int | None = None, **fields: Any) -> Key:
        """A key record of a freshly generated key string (kept in :attr:`plain`)."""
        at = self.tick() if at is None else at
        plain = keyformat.generate(prefix)
        key = Key(
            **{
                "id": new_id("key", at),
                "api_id": api_id,
                "digest": keyformat.digest(plain),
                "start": keyformat.start_of(plain),
                "created_at": at,
                "updated_at": at,
                **fields,
            }
        )
        self.plain[key.id] = plain
        return key

    def role(self, api_id: str, name: str, *permissions: str) -> Role:
        at = self.tick()
        return Role(api_id, name, permissions, at, at)

    def audit(
        self, *, actor: str = "cli", action: str = "key.create", target: str = "key_x", **fields: Any
    ) -> AuditEntry:
        at = self.tick()
        return AuditEntry(id=new_id("aud", at), ts=at, actor=actor, action=action, target=target, **fields)

    async def insert_api(self, **fields: Any) -> Api:
        api = self.api(**fields)
        async with self.storage.transaction() as tx:
            await tx.insert_api(api)
        return api

    async def insert_keys(self, *keys: Key) -> list[Key]:
        async with self.storage.transaction() as tx:
            await tx.insert_keys(keys)
        return list(keys)

    async def insert_key(self, api_id: str, **fields: Any) -> Key:
        [key] = await self.insert_keys(self.key(api_id, **fields))
        return key

    async def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a table, as plain dicts (to look behind the interface)."""
        return [dict(row) for row in await self.storage.driver.fetchall(f"SELECT * FROM {table}")]


@pytest.fixture
def records(storage: SqlStorage) -> Records:
    return Records(storage)

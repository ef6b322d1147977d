"""Helpers of the verifier tests: records made straight through storage, and a storage that counts its calls."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from keystile.core import keys as keyformat
from keystile.core.clock import ManualClock, now_ms
from keystile.core.ids import new_id
from keystile.core.models import Api, AuditEntry, AuditFilter, Key, KeyBundle, KeyFilter, Role
from keystile.core.ports import Storage, Transaction


class World:
    """Creates APIs, roles and keys through storage transactions (no services, no cache invalidation)."""

    def __init__(self, storage: Storage, clock: ManualClock) -> None:
        self.storage = storage
        self.clock = clock

    async def api(self, *, prefix: str = "ks", ip_allowlist: tuple[str, ...] = ()) -> Api:
        now = now_ms(self.clock)
        api = Api(new_id("api", now), "test", prefix, now, now, ip_allowlist=ip_allowlist)
        async with self.storage.transaction() as tx:
            await tx.insert_api(api)
        return api

    async def role(self, api: Api, name: str, *permissions: str) -> None:
        now = now_ms(self.clock)
        async with self.storage.transaction() as tx:
            await tx.put_role(Role(api.id, name, permissions, now, now))

    async def key(self, api_id: str, prefix: str = "ks", **fields: Any) -> tuple[Key, str]:
        """A new key of ``api_id`` and its plain text; ``fields`` set other :class:`Key` fields."""
        return await self.imported(api_id, keyformat.generate(prefix), **fields)

    async def imported(self, api_id: str, plain: str, **fields: Any) -> tuple[Key, str]:
        """A key of any string (as an import would store it)."""
        now = now_ms(self.clock)
        key = Key(new_id("key", now), api_id, keyformat.digest(plain), keyformat.start_of(plain), now, now)
        key = dataclasses.replace(key, **fields)
        async with self.storage.transaction() as tx:
            await tx.insert_keys([key])
        return key, plain

    async def update(self, key: Key, **fields: Any) -> Key:
        changed = dataclasses.replace(key, updated_at=now_ms(self.clock), **fields)
        async with self.storage.transaction() as tx:
            await tx.update_key(changed)
        return changed


class CountingStorage:
    """A :class:`Storage` that forwards to a real one and records every call made through it.

    ``after_load`` (if set) runs after the real ``load_for_verify`` has its answer (or its error) and before
    the verifier gets it: the moment at which a concurrent writer can slip in.
    """

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.after_load: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        # Whatever lies outside the Storage protocol (a driver, a helper) counts as a call too.
        self.calls.append(name)
        return getattr(self.inner, name)

    async def load_for_verify(self, digest: bytes) -> KeyBundle | None:
        self.calls.append("load_for_verify")
        try:
            return await self.inner.load_for_verify(digest)
        finally:
            if self.after_load is not None:
                await self.after_load()

    async def migrate(self) -> list[int]:
        self.calls.append("migrate")
        return await self.inner.migrate()

    async def pending_migrations(self) -> list[int]:
        self.calls.append("pending_migrations")
        return await self.inner.pending_migrations()

    async def ping(self) -> None:
        self.calls.append("ping")
        await self.inner.ping()

    async def close(self) -> None:
        self.calls.append("close")
        await self.inner.close()

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        self.calls.append("transaction")
        return self.inner.transaction()

    async def get_api(self, api_id: str) -> Api | None:
        self.calls.append("get_api")
        return await self.inner.get_api(api_id)

    async def list_apis(self, *, after: str | None, limit: int, only: frozenset[str] | None) -> list[Api]:
        self.calls.append("list_apis")
        return await self.inner.list_apis(after=after, limit=limit, only=only)

    async def get_key(self, key_id: str) -> Key | None:
        self.calls.append("get_key")
        return await self.inner.get_key(key_id)

    async def list_keys(self, api_id: str, where: KeyFilter, *, at_ms: int, after: str | None, limit: int) -> list[Key]:
        self.calls.append("list_keys")
        return await self.inner.list_keys(api_id, where, at_ms=at_ms, after=after, limit=limit)

    async def list_roles(self, api_id: str) -> list[Role]:
        self.calls.append("list_roles")
        return await self.inner.list_roles(api_id)

    async def count_keys(self, api_id: str) -> int:
        self.calls.append("count_keys")
        return await self.inner.count_keys(api_id)

    async def list_audit(self, where: AuditFilter, *, before: int | None, limit: int) -> list[AuditEntry]:
        self.calls.append("list_audit")
        return await self.inner.list_audit(where, before=before, limit=limit)

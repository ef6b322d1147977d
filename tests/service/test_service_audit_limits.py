"""Rerolls, credit operations and identities are audited in the same transaction as the change (SPEC A1): when
the write or its audit entry fails, neither is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import NewCredits, NewIdentity, NewKey
from keystile.core.models import RateLimit
from keystile.core.ports import Storage, Transaction
from keystile.errors import StorageError
from keystile.schemas import (
    identity_update,
)
from keystile.service import Keystile
from keystile.service.authz import Actor
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


class FailingTransaction:
    """A real transaction whose operation ``fail_on`` fails as if the database had."""

    def __init__(self, tx: Transaction, fail_on: str) -> None:
        self._tx = tx
        self._fail_on = fail_on

    def __getattr__(self, name: str) -> Any:
        if name != self._fail_on:
            return getattr(self._tx, name)

        async def fail(*args: Any) -> Any:
            raise StorageError("the database failed (injected by the test)")

        return fail


class FailingStorage:
    """Real storage whose transactions fail at one chosen operation."""

    def __init__(self, storage: Storage, fail_on: str) -> None:
        self._storage = storage
        self._fail_on = fail_on

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self._storage.transaction() as tx:
            yield FailingTransaction(tx, self._fail_on)


Action = Callable[[Keystile, Actor, str], Awaitable[Any]]
# Each action, and the write it makes before its audit entry.
ACTIONS: dict[str, tuple[Action, str]] = {
    "reroll": (lambda ks, actor, key_id: ks.keys.reroll(actor, key_id, grace_period_ms=1), "reroll_key"),
    "add credits": (
        lambda ks, actor, key_id: ks.keys.change_credits(actor, key_id, op="add", amount=5),
        "adjust_credits",
    ),
    "unlimited credits": (
        lambda ks, actor, key_id: ks.keys.change_credits(actor, key_id, op="set", amount=None),
        "drop_credits",
    ),
    "create identity": (
        lambda ks, actor, key_id: ks.identities.create(actor, NewIdentity(owner_id="new")),
        "insert_identity",
    ),
    "update identity": (
        lambda ks, actor, key_id: ks.identities.update(actor, "acme", identity_update({"credits": {"remaining": 1}})),
        "update_identity",
    ),
    "delete identity": (lambda ks, actor, key_id: ks.identities.delete(actor, "acme"), "delete_identity"),
}


async def snapshot(storage: SqlStorage) -> dict[str, list[dict[str, Any]]]:
    """Every row a reroll, a credit operation or an identity change could touch."""
    tables = ("keys", "credits", "identities", "ratelimits", "audit_log")
    return {
        table: [dict(row) for row in await storage.driver.fetchall(f"SELECT * FROM {table} ORDER BY 1")]
        for table in tables
    }


@pytest.mark.parametrize("fail_on", ["append_audit", "write"])
@pytest.mark.parametrize("action", ACTIONS)
async def test_a_failed_write_or_audit_entry_leaves_nothing_behind(
    ks: Keystile,
    storage: SqlStorage,
    settings: Settings,
    clock: ManualClock,
    admin: Admin,
    action: str,
    fail_on: str,
) -> None:
    api = await admin.api()
    shared = [RateLimit(name="api", limit=5, duration_ms=1000)]
    await ks.identities.create(
        admin.actor, NewIdentity(owner_id="acme", credits=NewCredits(remaining=9), ratelimits=shared)
    )
    key, _ = await ks.keys.create(admin.actor, api.id, NewKey(owner_id="acme", credits=NewCredits(remaining=3)))
    before = await snapshot(storage)
    run, write = ACTIONS[action]
    broken = Keystile.create(
        cast(Storage, FailingStorage(storage, write if fail_on == "write" else "append_audit")), settings, clock
    )

    with pytest.raises(StorageError, match="injected"):
        await run(broken, admin.actor, key.id)

    assert await snapshot(storage) == before

    # And with nothing failing, the action writes exactly one audit entry.
    await run(ks, admin.actor, key.id)
    after = await snapshot(storage)
    assert len(after["audit_log"]) == len(before["audit_log"]) + 1

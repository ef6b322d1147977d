"""The audit log (SPEC A1): one entry per object for every management action, written in the same transaction
as the change, and never a key in plain text (SPEC K3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewKey, NewRootKey
from keystile.core.models import AuditEntry, AuditFilter, KeyFilter
from keystile.core.ports import Storage, Transaction
from keystile.errors import StorageError
from keystile.schemas import api_update, key_update
from keystile.service import CLI_ACTOR, Keystile
from keystile.service.authz import Actor
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


class Recorder:
    """Runs management actions and returns the audit entries each one wrote."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.seen = 0

    async def __call__(self, action: Awaitable[Any]) -> tuple[Any, list[AuditEntry]]:
        result = await action
        entries = await self.admin.audit()
        new, self.seen = entries[self.seen :], len(entries)
        return result, new


def assert_entry(entry: AuditEntry, actor: Actor, action: str, target: str, at_ms: int) -> None:
    assert (entry.action, entry.target) == (action, target)
    assert entry.actor == actor.id
    assert (entry.ip, entry.user_agent) == (actor.ip, actor.user_agent)
    assert entry.ip is not None
    assert entry.user_agent is not None
    assert entry.ts == at_ms
    assert entry.id.startswith("aud_")
    assert isinstance(entry.changes, dict)
    assert entry.changes, f"{action} records what changed"


async def test_every_management_action_writes_one_entry_per_object(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    record = Recorder(admin)
    await record(admin.audit())
    actor = admin.actor
    now = int(clock.now() * 1000)

    api, [entry] = await record(ks.apis.create(actor, NewApi(name="audited", ip_allowlist=["10.0.0.0/8"])))
    assert_entry(entry, actor, "api.create", api.id, now)
    assert entry.changes["name"] == "audited"

    _, [entry] = await record(ks.apis.update(actor, api.id, api_update({"name": "renamed", "ip_allowlist": None})))
    assert_entry(entry, actor, "api.update", api.id, now)
    assert entry.changes == {"name": ["audited", "renamed"], "ip_allowlist": [["10.0.0.0/8"], []]}

    _, [entry] = await record(ks.apis.put_role(actor, api.id, name="reader", permissions=["docs.read"]))
    assert_entry(entry, actor, "role.create", f"{api.id}/roles/reader", now)
    _, [entry] = await record(ks.apis.put_role(actor, api.id, name="reader", permissions=["docs.*"]))
    assert_entry(entry, actor, "role.update", f"{api.id}/roles/reader", now)
    assert entry.changes == {"permissions": [["docs.read"], ["docs.*"]]}
    _, entries = await record(ks.apis.put_role(actor, api.id, name="reader", permissions=["docs.*"]))
    assert entries == [], "putting a role unchanged writes nothing"

    (key, _), [entry] = await record(ks.keys.create(actor, api.id, NewKey(name="one", roles=["reader"])))
    assert_entry(entry, actor, "key.create", key.id, now)
    assert entry.changes["start"] == key.start

    created, entries = await record(ks.keys.create_many(actor, api.id, [NewKey(name=f"bulk {i}") for i in range(3)]))
    assert len(entries) == 3
    for (bulk_key, _), bulk_entry in zip(created, entries, strict=True):
        assert_entry(bulk_entry, actor, "key.create", bulk_key.id, now)

    _, [entry] = await record(ks.keys.update(actor, key.id, key_update({"meta": {"team": "blue"}})))
    assert_entry(entry, actor, "key.update", key.id, now)
    assert entry.changes == {"meta": [{}, {"team": "blue"}]}

    _, [entry] = await record(ks.keys.revoke(actor, key.id))
    assert_entry(entry, actor, "key.revoke", key.id, now)
    _, entries = await record(ks.keys.revoke(actor, key.id))
    assert entries == [], "revoking again changes nothing, so nothing is audited"

    _, [entry] = await record(ks.keys.delete(actor, key.id))
    assert_entry(entry, actor, "key.delete", key.id, now)
    assert entry.changes["start"] == key.start

    _, [entry] = await record(ks.apis.delete_role(actor, api.id, "reader"))
    assert_entry(entry, actor, "role.delete", f"{api.id}/roles/reader", now)

    (root_key, _), [entry] = await record(ks.root_keys.create(actor, NewRootKey(permissions=["keys.read"])))
    assert_entry(entry, actor, "root_key.create", root_key.id, now)
    assert entry.changes["permissions"] == ["keys.read"]
    _, [entry] = await record(ks.root_keys.revoke(actor, root_key.id))
    assert_entry(entry, actor, "root_key.revoke", root_key.id, now)

    _, [entry] = await record(ks.apis.delete(actor, api.id))
    assert_entry(entry, actor, "api.delete", api.id, now)
    assert entry.changes["deleted_keys"] == 3


async def test_the_cli_is_audited_as_cli(ks: Keystile) -> None:
    api = await ks.apis.create(CLI_ACTOR, NewApi(name="from the shell"))

    [entry] = await ks.storage.list_audit(AuditFilter(target=api.id), before=None, limit=10)
    assert (entry.actor, entry.ip, entry.user_agent) == ("cli", None, None)


async def test_the_audit_log_is_listed_newest_first_in_pages_with_audit_read(ks: Keystile, admin: Admin) -> None:
    for i in range(5):
        await admin.api(NewApi(name=f"api {i}"))
    everything = list(reversed(await admin.audit()))
    reader = (await admin.actor_with("audit.read")).principal

    first = await ks.audit.list(reader, AuditFilter(action="api.create"), cursor=None, limit=3)
    second = await ks.audit.list(reader, AuditFilter(action="api.create"), cursor=first.next_cursor, limit=3)

    api_entries = [e for e in everything if e.action == "api.create"]
    assert first.items + second.items == api_entries
    assert second.next_cursor is None


# -- same transaction ---------------------------------------------------------------------------------------------


class _FailingTransaction:
    def __init__(self, tx: Transaction, fail_on: str) -> None:
        self._tx = tx
        self._fail_on = fail_on

    def __getattr__(self, name: str) -> Any:
        if name == self._fail_on:

            async def fail(*args: Any) -> Any:
                raise StorageError("the database failed (injected by the test)")

            return fail
        return getattr(self._tx, name)


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
            yield _FailingTransaction(tx, self._fail_on)


Action = Callable[[Keystile, Actor, str, str], Awaitable[Any]]
ACTIONS: dict[str, Action] = {
    "create api": lambda ks, actor, api_id, key_id: ks.apis.create(actor, NewApi(name="new")),
    "update api": lambda ks, actor, api_id, key_id: ks.apis.update(actor, api_id, api_update({"name": "changed"})),
    "delete api": lambda ks, actor, api_id, key_id: ks.apis.delete(actor, api_id),
    "put role": lambda ks, actor, api_id, key_id: ks.apis.put_role(actor, api_id, name="new"),
    "delete role": lambda ks, actor, api_id, key_id: ks.apis.delete_role(actor, api_id, "reader"),
    "create key": lambda ks, actor, api_id, key_id: ks.keys.create(actor, api_id, NewKey()),
    "bulk create": lambda ks, actor, api_id, key_id: ks.keys.create_many(actor, api_id, [NewKey()] * 2),
    "update key": lambda ks, actor, api_id, key_id: ks.keys.update(actor, key_id, key_update({"name": "changed"})),
    "revoke key": lambda ks, actor, api_id, key_id: ks.keys.revoke(actor, key_id),
    "delete key": lambda ks, actor, api_id, key_id: ks.keys.delete(actor, key_id),
    "create root key": lambda ks, actor, api_id, key_id: ks.root_keys.create(actor, NewRootKey(permissions=["*"])),
}


async def _snapshot(ks: Keystile, admin: Admin, api_id: str) -> Any:
    """Everything a management action could have changed."""
    principal = admin.actor.principal
    apis = await ks.apis.list(principal, cursor=None, limit=None)
    keys = await ks.keys.list(principal, api_id, KeyFilter()) if any(a.id == api_id for a in apis.items) else None
    roots = await ks.root_keys.list(principal, cursor=None, limit=None)
    return (
        apis.items,
        keys.items if keys else None,
        await ks.storage.list_roles(api_id),
        roots.items,
        await admin.audit(),
    )


@pytest.mark.parametrize("fail_on", ["append_audit", "write"])
@pytest.mark.parametrize("action", ACTIONS)
async def test_a_failed_write_leaves_neither_the_change_nor_its_entry(
    ks: Keystile, storage: SqlStorage, settings: Settings, clock: ManualClock, admin: Admin, action: str, fail_on: str
) -> None:
    api = await admin.api(NewApi(name="kept"))
    await ks.apis.put_role(admin.actor, api.id, name="reader")
    key, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="kept", roles=["reader"]))
    before = await _snapshot(ks, admin, api.id)
    writes = {
        "create api": "insert_api",
        "update api": "update_api",
        "delete api": "delete_api",
        "put role": "put_role",
        "delete role": "delete_role",
        "update key": "update_key",
        "revoke key": "update_key",
        "delete key": "delete_key",
    }
    failing = FailingStorage(storage, writes.get(action, "insert_keys") if fail_on == "write" else "append_audit")
    broken = Keystile.create(cast(Storage, failing), settings, clock)

    with pytest.raises(StorageError, match="injected"):
        await ACTIONS[action](broken, admin.actor, api.id, key.id)

    assert await _snapshot(ks, admin, api.id) == before


# -- no plain text ------------------------------------------------------------------------------------------------


async def test_no_audit_entry_nor_table_holds_a_plain_text_key(
    ks: Keystile, storage: SqlStorage, admin: Admin, root: tuple[Actor, str], database_url: str
) -> None:
    _, root_plain = root
    api = await admin.api(NewApi(name="secrets", prefix="sec_live"))
    await ks.apis.put_role(admin.actor, api.id, name="reader", permissions=["docs.read"])
    one, plain_one = await ks.keys.create(admin.actor, api.id, NewKey(name="one", meta={"note": "ü"}))
    bulk = await ks.keys.create_many(
        admin.actor, api.id, [NewKey(name=f"bulk {i}", roles=["reader"]) for i in range(3)]
    )
    root_key, plain_root = await ks.root_keys.create(admin.actor, NewRootKey(permissions=["keys.*"]))
    await ks.keys.update(admin.actor, one.id, key_update({"name": "renamed", "meta": {"note": None}}))
    await ks.keys.revoke(admin.actor, bulk[0][0].id)
    await ks.keys.delete(admin.actor, bulk[1][0].id)
    await ks.root_keys.revoke(admin.actor, root_key.id)
    secrets = [root_plain, plain_one, plain_root, *(plain for _, plain in bulk)]
    # The random part alone is as secret as the key (the prefix is not).
    needles = [needle for secret in secrets for needle in (secret, secret.rpartition("_")[2])]

    entries = await admin.audit()
    assert len(entries) >= 9
    for entry in entries:
        text = entry.canonical().decode()
        assert not [needle for needle in needles if needle in text], entry.action

    rows: list[str] = []
    for table in ("apis", "keys", "credits", "ratelimits", "roles", "audit_log", "keystile_migrations"):
        rows.extend(repr(dict(row)) for row in await storage.driver.fetchall(f"SELECT * FROM {table}"))
    dump = "\n".join(rows)
    assert one.start in dump, "the dump holds what is shown of a key"
    assert not [needle for needle in needles if needle in dump]

    if database_url.startswith("sqlite:"):
        # Every byte SQLite wrote, including its write-ahead log.
        path = Path(database_url.removeprefix("sqlite:///"))
        raw = b"".join(file.read_bytes() for file in path.parent.glob(path.name + "*"))
        assert one.start.encode() in raw
        assert not [needle for needle in needles if needle.encode() in raw]

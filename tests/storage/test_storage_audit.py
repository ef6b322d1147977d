"""Contract: the audit log (SPEC A1), and that no table ever holds a key in plain text (SPEC K3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keystile.core.models import AuditFilter, Credits, RateLimit
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.storage.conftest import Records


async def test_audit_entries_get_increasing_sequence_numbers_in_commit_order(
    storage: SqlStorage, records: Records
) -> None:
    entries = [records.audit(target=f"key_{i}") for i in range(5)]
    stored = []
    for entry in entries[:2]:
        async with storage.transaction() as tx:
            stored.append(await tx.append_audit(entry))
    async with storage.transaction() as tx:
        for entry in entries[2:]:
            stored.append(await tx.append_audit(entry))

    seqs = [entry.seq for entry in stored if entry.seq is not None]
    assert len(set(seqs)) == 5
    assert seqs == sorted(seqs)
    assert [entry.id for entry in stored] == [entry.id for entry in entries]


async def test_an_audit_entry_reads_back_as_appended(storage: SqlStorage, records: Records) -> None:
    entry = records.audit(
        actor="rk_0123",
        action="key.update",
        target="key_abc",
        ip="2001:db8::1",
        user_agent="curl/8.5 ✓",
        changes={"name": [None, "Zürich"], "meta": [{}, {"a": [1, {"b": None}]}], "enabled": [True, False]},
    )
    async with storage.transaction() as tx:
        stored = await tx.append_audit(entry)

    [listed] = await storage.list_audit(AuditFilter(), before=None, limit=10)
    assert listed == stored
    assert listed.canonical() == stored.canonical()


async def test_audit_entries_are_listed_newest_first_in_pages(storage: SqlStorage, records: Records) -> None:
    async with storage.transaction() as tx:
        stored = [await tx.append_audit(records.audit(target=f"key_{i}")) for i in range(7)]
    newest_first = list(reversed(stored))

    pages = []
    before = None
    while page := await storage.list_audit(AuditFilter(), before=before, limit=3):
        pages.append(page)
        before = page[-1].seq

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [entry for page in pages for entry in page] == newest_first


async def test_audit_entries_are_filtered_by_actor_action_target_and_time(
    storage: SqlStorage, records: Records
) -> None:
    async with storage.transaction() as tx:
        a = await tx.append_audit(records.audit(actor="rk_a", action="key.create", target="key_1"))
        b = await tx.append_audit(records.audit(actor="rk_b", action="key.create", target="key_2"))
        c = await tx.append_audit(records.audit(actor="rk_a", action="key.revoke", target="key_1"))
        d = await tx.append_audit(records.audit(actor="cli", action="api.delete", target="api_1"))

    async def ids(where: AuditFilter, before: int | None = None) -> list[str]:
        return [entry.id for entry in await storage.list_audit(where, before=before, limit=100)]

    assert await ids(AuditFilter(actor="rk_a")) == [c.id, a.id]
    assert await ids(AuditFilter(action="key.create")) == [b.id, a.id]
    assert await ids(AuditFilter(target="key_1")) == [c.id, a.id]
    assert await ids(AuditFilter(actor="rk_a", action="key.create")) == [a.id]
    assert await ids(AuditFilter(since=b.ts)) == [d.id, c.id, b.id]
    assert await ids(AuditFilter(until=c.ts)) == [b.id, a.id]
    assert await ids(AuditFilter(since=b.ts, until=d.ts)) == [c.id, b.id]
    assert await ids(AuditFilter(target="key_1"), before=c.seq) == [a.id]
    assert await ids(AuditFilter(actor="nobody")) == []


# -- no plain-text keys (SPEC K3) ------------------------------------------------------------------------------


async def _every_value(storage: SqlStorage) -> list[tuple[str, str, Any]]:
    """``(table, column, value)`` for every cell of every table of the schema."""
    if storage.dialect == "sqlite":
        tables = [
            row["name"]
            for row in await storage.driver.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
    else:
        tables = [
            row["table_name"]
            for row in await storage.driver.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        ]
    assert {"apis", "keys", "credits", "ratelimits", "roles", "audit_log"} <= set(tables)
    cells: list[tuple[str, str, Any]] = []
    for table in tables:
        for row in await storage.driver.fetchall(f'SELECT * FROM "{table}"'):
            cells.extend((table, column, value) for column, value in dict(row).items())
    return cells


def _holds(value: Any, secret: str) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return secret.encode() in raw or secret.encode().hex() in raw.hex()
    return secret in str(value)


async def test_the_database_never_holds_a_key_in_plain_text(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api(prefix="pay_live")
    async with storage.transaction() as tx:
        await tx.put_role(records.role(api.id, "reader", "docs.read"))
    await records.insert_keys(
        *[
            records.key(
                api.id,
                prefix="pay_live",
                name=f"key {i}",
                meta={"note": "ü"},
                credits=Credits(f"cr_{i}", 10),
                ratelimits=(RateLimit("r", 1, 1000),),
                roles=("reader",),
            )
            for i in range(5)
        ]
    )
    root = await records.insert_key("api_root", prefix="ks_root", permissions=("*",))
    async with storage.transaction() as tx:
        for key_id in records.plain:
            await tx.append_audit(records.audit(target=key_id, changes={"start": "pay_live_abcd"}))
    assert len(records.plain) == 6

    cells = await _every_value(storage)
    leaks = [
        (table, column)
        for table, column, value in cells
        for secret in records.plain.values()
        # The random part alone is a secret too (190 bits of it); the prefix is not.
        for part in (secret, secret.rpartition("_")[2])
        if _holds(value, part)
    ]
    assert leaks == []
    # The check is not vacuous: the digests are there, and so is what is shown of each key.
    digests = {bytes(value) for table, column, value in cells if (table, column) == ("keys", "digest")}
    assert root.digest in digests
    starts = {value for table, column, value in cells if (table, column) == ("keys", "start")}
    assert root.start in starts

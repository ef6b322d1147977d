"""Contract: the audit log's hash chain (SPEC A2). Entries are numbered 1, 2, 3, ... and linked by hash in commit
order, the head follows the last one, the chain is read back oldest first in pages, and entries written before
the chain existed are chained by the upgrade that adds it."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from tests.storage.conftest import T0

from keystile.core.auditchain import GENESIS, ChainCheck, chain_hash
from keystile.core.clock import ManualClock
from keystile.core.ids import new_id
from keystile.core.models import AuditEntry
from keystile.storage import SqlStorage, open_storage
from keystile.storage._migrate import migrate

if TYPE_CHECKING:
    from tests.storage.conftest import Records


async def _walk(storage: SqlStorage, page: int = 3) -> list[AuditEntry]:
    """The whole chain, oldest first, read ``page`` entries at a time; fails at the first break."""
    check = ChainCheck()
    walked: list[AuditEntry] = []
    while entries := await storage.audit_chain(from_seq=check.expected, limit=page):
        for entry in entries:
            assert check.feed(entry) is None
        walked.extend(entries)
    return walked


async def test_appended_entries_are_numbered_from_1_and_linked_by_hash(storage: SqlStorage, records: Records) -> None:
    assert await storage.audit_head() == (0, GENESIS)
    stored = []
    for i in range(3):
        async with storage.transaction() as tx:
            stored.append(await tx.append_audit(records.audit(target=f"key_{i}", changes={"n": i, "名": "Zoë"})))
    async with storage.transaction() as tx:
        stored += [await tx.append_audit(records.audit(target=f"key_{i}")) for i in range(3, 7)]

    assert [entry.seq for entry in stored] == [1, 2, 3, 4, 5, 6, 7]
    assert stored[0].prev_hash == GENESIS
    for before, entry in itertools.pairwise(stored):
        assert entry.prev_hash == before.hash
    for entry in stored:
        assert entry.prev_hash is not None
        assert entry.hash == chain_hash(entry.prev_hash, entry)
    assert await _walk(storage) == stored
    assert await storage.audit_head() == (7, stored[-1].hash)
    assert await storage.audit_entry(4) == stored[3]
    assert await storage.audit_entry(8) is None


async def test_a_rolled_back_entry_leaves_neither_a_gap_nor_a_head(storage: SqlStorage, records: Records) -> None:
    async with storage.transaction() as tx:
        first = await tx.append_audit(records.audit())
    try:
        async with storage.transaction() as tx:
            await tx.append_audit(records.audit())
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    async with storage.transaction() as tx:
        second = await tx.append_audit(records.audit())

    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    assert await storage.audit_head() == (2, second.hash)


def _entry(i: int, **fields: Any) -> AuditEntry:
    at = T0 + i
    return AuditEntry(id=new_id("aud", at), ts=at, actor="cli", action="key.create", target=f"key_{i}", **fields)


# Not over the `storage` fixture: that one is migrated to the end already.
async def test_entries_written_before_the_chain_are_chained_by_the_upgrade(
    database_url: str, clock: ManualClock
) -> None:
    store = await open_storage(database_url, clock)
    try:
        await migrate(store.driver, 0, up_to=4)
        insert = (
            "INSERT INTO audit_log (id, ts, actor, action, target, ip, user_agent, changes)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        old = [_entry(i, ip="2001:db8::1", changes={"b": [None, "Zürich"], "a": {"y": 1.5, "x": i}}) for i in range(5)]
        for entry in old:
            await store.driver.execute(
                insert, entry.id, entry.ts, entry.actor, entry.action, entry.target, entry.ip, entry.user_agent,
                f'{{"b": [null, "Zürich"], "a": {{"y": 1.5, "x": {entry.changes["a"]["x"]}}}}}',
            )  # fmt: skip
        # A gap, as a rolled-back insert left them before the chain numbered entries itself.
        await store.driver.execute("DELETE FROM audit_log WHERE id = $1", old[1].id)

        assert (await store.migrate())[0] == 5  # with the migrations after it

        walked = await _walk(store)
        assert [entry.id for entry in walked] == [old[i].id for i in (0, 2, 3, 4)]
        assert [entry.seq for entry in walked] == [1, 2, 3, 4]
        assert await store.audit_head() == (4, walked[-1].hash)
        async with store.transaction() as tx:
            new = await tx.append_audit(_entry(5))
        assert (new.seq, new.prev_hash) == (5, walked[-1].hash)
        assert len(await _walk(store)) == 5
    finally:
        await store.close()


async def test_changes_of_every_json_shape_keep_their_hash(storage: SqlStorage, records: Records) -> None:
    # PostgreSQL's jsonb would rewrite numbers (1e100 as 1000..., -0.0 as 0.0), and so the bytes that were hashed.
    changes = {
        "meta": [None, {"big": 1e100, "tiny": 1e-7, "one": 1.0, "minus_zero": -0.0, "long": 2**63 - 1}],
        "name": ["Zoë 🔑", "\u2028 \\ \" '"],
        "nested": {"b": [1, {"z": None, "a": True}], "a": []},
    }
    async with storage.transaction() as tx:
        stored = await tx.append_audit(records.audit(changes=changes))

    [walked] = await _walk(storage)
    assert walked == stored
    assert walked.changes == changes

"""Verifying the audit log's hash chain (SPEC A2): an untouched log verifies, and each way of tampering with it
directly in the database (changing, forging, removing, swapping or reordering entries, cutting the tail,
recomputing the chain) is named at the first entry it affects, on every backend."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from keystile.core.auditchain import Anchor, ChainReport, chain_hash
from keystile.core.commands import NewApi
from keystile.core.models import AuditEntry
from keystile.errors import Forbidden, InvalidInput
from keystile.service import CLI_ACTOR, Keystile

if TYPE_CHECKING:
    from tests.service.conftest import Admin


async def _log(admin: Admin, apis: int = 5) -> list[AuditEntry]:
    """The root key's entry and ``apis`` more; every entry, oldest first."""
    for i in range(apis):
        await admin.ks.apis.create(admin.actor, NewApi(name=f"api {i}"))
    return await admin.audit()


async def _verify(ks: Keystile, **options: Any) -> ChainReport:
    return await ks.audit.verify(CLI_ACTOR.principal, **options)


async def _sql(ks: Keystile, sql: str, *args: Any) -> None:
    await ks.storage.driver.execute(sql, *args)  # type: ignore[attr-defined]


def _anchor(entry: AuditEntry) -> Anchor:
    assert entry.seq is not None
    assert entry.hash is not None
    return Anchor(entry.seq, entry.hash)


_INSERT = (
    "INSERT INTO audit_log (seq, id, ts, actor, action, target, ip, user_agent, changes, prev_hash, hash)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)


def _row(entry: AuditEntry) -> tuple[Any, ...]:
    import json

    return (
        entry.seq, entry.id, entry.ts, entry.actor, entry.action, entry.target, entry.ip, entry.user_agent,
        json.dumps(entry.changes), entry.prev_hash, entry.hash,
    )  # fmt: skip


async def test_an_untouched_log_verifies_whatever_the_page_size(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)

    for page in (1, 2, 1000):
        report = await _verify(ks, page=page)
        assert report.ok, report.problem
        assert report.checked == len(log) == 6
        assert report.last == log[-1]


async def test_an_empty_log_verifies(ks: Keystile) -> None:
    report = await _verify(ks)
    assert (report.ok, report.checked, report.last) == (True, 0, None)
    assert await ks.audit.head(CLI_ACTOR.principal) is None


async def test_the_head_is_the_newest_entry(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin, apis=2)
    assert await ks.audit.head(CLI_ACTOR.principal) == log[-1]


async def test_a_field_edited_in_the_database_is_named(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    await _sql(ks, "UPDATE audit_log SET actor = 'rk_someone_else' WHERE seq = 3")

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("changed", 3, log[2].id)
    assert "hash mismatch" in report.problem.detail
    assert report.checked == 2


async def test_edited_changes_are_named(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    await _sql(ks, "UPDATE audit_log SET changes = $1 WHERE seq = 4", '{"name": "not what happened"}')

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("changed", 4, log[3].id)


async def test_a_forged_entry_is_named(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    forged = replace(log[-1], id="aud_forged", seq=7, prev_hash=log[-1].hash, hash="ab" * 32, action="api.delete")
    await _sql(ks, _INSERT, *_row(forged))

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("changed", 7, "aud_forged")


async def test_an_entry_slipped_into_the_middle_is_found_where_it_went_in(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    # Make room at seq 3 and insert an entry there whose hash is right for its place: the entry moved to seq 4
    # no longer matches its hash.
    await _sql(ks, "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3")
    await _sql(ks, "UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000")
    forged = replace(log[2], id="aud_forged", seq=3, prev_hash=log[1].hash)
    forged = replace(forged, hash=chain_hash(log[1].hash or "", forged))
    await _sql(ks, _INSERT, *_row(forged))

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("changed", 4, log[2].id)


async def test_a_deleted_entry_is_a_gap(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    await _sql(ks, "DELETE FROM audit_log WHERE seq = 3")

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("gap", 4, log[3].id)
    assert "seq 3 missing" in report.problem.detail


async def test_a_deleted_entry_with_the_rest_renumbered_is_named_where_the_numbers_moved(
    ks: Keystile, admin: Admin
) -> None:
    log = await _log(admin)
    await _sql(ks, "DELETE FROM audit_log WHERE seq = 3")
    await _sql(ks, "UPDATE audit_log SET seq = seq + 999 WHERE seq > 3")
    await _sql(ks, "UPDATE audit_log SET seq = seq - 1000 WHERE seq > 1000")

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("changed", 3, log[3].id)


async def test_two_entries_with_their_contents_swapped_are_named(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    # Everything but seq swapped between seq 2 and 3, hashes included.
    await _sql(ks, "DELETE FROM audit_log WHERE seq IN (2, 3)")
    await _sql(ks, _INSERT, *_row(replace(log[2], seq=2)))
    await _sql(ks, _INSERT, *_row(replace(log[1], seq=3)))
    await _sql(ks, "UPDATE audit_head SET seq = $1, hash = $2", log[-1].seq, log[-1].hash)

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("changed", 2, log[2].id)


async def test_an_entry_moved_with_its_hashes_breaks_the_link_of_the_next(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    # Entry 3 replaced by a well-formed entry of its own (as if from another chain): it matches its hash, but the
    # entry after it was linked to the one that was there.
    other = replace(log[2], id="aud_other", target="api_other")
    other = replace(other, hash=chain_hash(other.prev_hash or "", other))
    await _sql(ks, "DELETE FROM audit_log WHERE seq = 3")
    await _sql(ks, _INSERT, *_row(other))
    await _sql(ks, "UPDATE audit_head SET seq = $1, hash = $2", log[-1].seq, log[-1].hash)

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("broken_link", 4, log[3].id)


async def test_a_deleted_tail_is_caught_by_the_head_the_log_records(ks: Keystile, admin: Admin) -> None:
    await _log(admin)
    await _sql(ks, "DELETE FROM audit_log WHERE seq >= 5")

    report = await _verify(ks)

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("truncated", 5)
    assert report.checked == 4


async def test_a_deleted_tail_with_the_head_rewritten_is_caught_by_an_anchored_head(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    anchor = _anchor(log[-1])
    await _sql(ks, "DELETE FROM audit_log WHERE seq >= 5")
    await _sql(ks, "UPDATE audit_head SET seq = $1, hash = $2", log[3].seq, log[3].hash)
    assert (await _verify(ks)).ok, "without an anchor the cut cannot be seen"

    report = await _verify(ks, anchors=[anchor])

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("head_missing", 6, None)
    assert "removed from the end" in report.problem.detail


async def test_a_recomputed_chain_is_caught_by_an_anchored_head(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    anchor = _anchor(log[-1])
    # Change entry 2 and recompute every hash after it, as someone who knows the format would.
    prev = log[0].hash or ""
    for entry in log[1:]:
        changed = replace(entry, actor="rk_someone_else" if entry.seq == 2 else entry.actor, prev_hash=prev)
        changed = replace(changed, hash=chain_hash(prev, changed))
        await _sql(
            ks, "UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
            changed.actor, changed.prev_hash, changed.hash, changed.seq,
        )  # fmt: skip
        prev = changed.hash or ""
    await _sql(ks, "UPDATE audit_head SET hash = $1", prev)
    assert (await _verify(ks)).ok

    report = await _verify(ks, anchors=[anchor])

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("head_differs", 6, log[-1].id)


async def test_an_anchored_head_that_is_still_there_verifies(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    anchors = [_anchor(log[2]), _anchor(log[-1])]
    await ks.apis.create(admin.actor, NewApi(name="later"))

    report = await _verify(ks, anchors=anchors)

    assert report.ok, report.problem
    assert report.checked == 7


async def test_from_starts_at_an_entry_trusting_its_link(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    await _sql(ks, "UPDATE audit_log SET actor = 'rk_someone_else' WHERE seq = 2")

    report = await _verify(ks, start=3)

    assert report.ok, report.problem
    assert (report.checked, report.last) == (4, log[-1])
    assert (await _verify(ks, start=7)).checked == 0
    with pytest.raises(InvalidInput):
        await _verify(ks, start=0)


async def test_verifying_needs_audit_read(ks: Keystile, admin: Admin) -> None:
    reader = await admin.actor_with("keys.read")
    with pytest.raises(Forbidden):
        await ks.audit.verify(reader.principal)
    with pytest.raises(Forbidden):
        await ks.audit.head(reader.principal)


async def test_from_after_an_anchored_head_checks_the_link_to_it(ks: Keystile, admin: Admin) -> None:
    log = await _log(admin)
    anchor = _anchor(log[2])
    assert (await _verify(ks, start=4, anchors=[anchor])).checked == 3

    # The entries from the anchor on rewritten (entry 3 changed, every hash recomputed): entry 3 no longer has the
    # anchored hash, and entry 4 no longer links to it.
    prev = log[1].hash or ""
    for entry in log[2:]:
        changed = replace(entry, actor="rk_someone_else" if entry.seq == 3 else entry.actor, prev_hash=prev)
        changed = replace(changed, hash=chain_hash(prev, changed))
        await _sql(
            ks, "UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
            changed.actor, changed.prev_hash, changed.hash, changed.seq,
        )  # fmt: skip
        prev = changed.hash or ""
    await _sql(ks, "UPDATE audit_head SET hash = $1", prev)
    assert (await _verify(ks, start=4)).ok, "from seq 4 on, without the anchor, the chain holds"

    report = await _verify(ks, start=4, anchors=[anchor])

    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.id) == ("broken_link", 4, log[3].id)

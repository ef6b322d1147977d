"""Contract: the writes of a key import (SPEC R4, K2) on every backend: digests found across APIs, bulk inserts
that read back like any key, a unique digest, and the mark of APIs holding keys imported by digest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from keystile.core.models import Credits, RateLimit, Refill
from keystile.errors import Conflict
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.storage.conftest import Records


async def test_find_digests_names_the_key_and_api_of_each_digest_held(storage: SqlStorage, records: Records) -> None:
    first, second = await records.insert_api(), await records.insert_api()
    [a] = await records.insert_keys(records.key(first.id))
    [b] = await records.insert_keys(records.key(second.id))
    unknown = bytes(32)

    async with storage.transaction() as tx:
        found = await tx.find_digests([a.digest, b.digest, unknown])

    assert found == {a.digest: (a.id, first.id), b.digest: (b.id, second.id)}


async def test_find_digests_takes_more_digests_than_one_statement_matches(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    keys = [records.key(api.id) for _ in range(1200)]
    async with storage.transaction() as tx:
        await tx.import_keys(keys)
        found = await tx.find_digests([key.digest for key in keys])
    assert len(found) == 1200


async def test_imported_keys_read_back_as_inserted_with_credits_and_limits(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    at = records.tick()
    full = records.key(
        api.id,
        at=at,
        name="Ünïcode",
        owner_id="user_1",
        meta={"plan": "pro", "nested": {"a": [1, None]}},
        permissions=("docs.read",),
        expires_at=at + 1000,
        enabled=False,
        credits=Credits("cr_imported", 50, Refill(100, "daily")),
        ratelimits=(RateLimit("api", 10, 1000),),
    )
    bare = records.key(api.id, start="")

    async with storage.transaction() as tx:
        await tx.import_keys([full, bare])

    assert await storage.get_key(full.id) == full
    assert await storage.get_key(bare.id) == bare
    bundle = await storage.load_for_verify(bare.digest)
    assert bundle is not None
    assert bundle.key.id == bare.id


async def test_an_imported_digest_stays_unique_and_a_clash_writes_nothing(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    [held] = await records.insert_keys(records.key(api.id))
    fresh = records.key(api.id)
    clash = records.key(api.id, digest=held.digest)

    with pytest.raises(Conflict):
        async with storage.transaction() as tx:
            await tx.import_keys([fresh, clash])

    assert await storage.get_key(fresh.id) is None
    assert await storage.count_keys(api.id) == 1


async def test_apis_marked_for_keys_imported_by_digest_give_their_prefixes(
    storage: SqlStorage, records: Records
) -> None:
    marked = await records.insert_api(prefix="acme")
    await records.insert_api(prefix="other")
    assert await storage.digest_import_prefixes() == frozenset()

    async with storage.transaction() as tx:
        assert await tx.mark_imported_by_digest(marked.id) is True
    async with storage.transaction() as tx:
        assert await tx.mark_imported_by_digest(marked.id) is False, "marked already"

    assert await storage.digest_import_prefixes() == frozenset({"acme"})


async def test_the_mark_rolls_back_with_its_transaction(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api(prefix="acme")

    async def marked_then_failed() -> None:
        async with storage.transaction() as tx:
            await tx.mark_imported_by_digest(api.id)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await marked_then_failed()
    assert await storage.digest_import_prefixes() == frozenset()

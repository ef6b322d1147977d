"""Contract: identities (SPEC K5), credit operations (L3) and rerolls (R2) on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from keystile.core.ids import new_id
from keystile.core.models import Credits, Identity, RateLimit, Refill
from keystile.errors import Conflict
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.storage.conftest import Records


def identity(
    records: Records,
    owner_id: str = "acme",
    *,
    meta: dict[str, Any] | None = None,
    credits: Credits | None = None,
    ratelimits: tuple[RateLimit, ...] = (),
) -> Identity:
    at = records.tick()
    return Identity(new_id("idn", at), owner_id, at, at, meta or {}, credits, ratelimits)


async def insert_identity(storage: SqlStorage, value: Identity) -> Identity:
    async with storage.transaction() as tx:
        await tx.insert_identity(value)
    return value


# -- identities ------------------------------------------------------------------------------------------------


async def test_an_identity_reads_back_exactly_as_inserted(storage: SqlStorage, records: Records) -> None:
    full = identity(
        records,
        meta={"plan": "pro", "city": "Zürich"},
        credits=Credits("cr_acme", 500, Refill(500, "monthly", 3), refilled_at=records.tick()),
        ratelimits=(RateLimit("zeta", 10, 1000), RateLimit("alpha", 5, 60_000, auto_apply=False)),
    )
    bare = identity(records, "solo")
    await insert_identity(storage, full)
    await insert_identity(storage, bare)

    assert await storage.get_identity("acme") == full
    assert await storage.get_identity("solo") == bare
    assert await storage.get_identity("nobody") is None
    async with storage.transaction() as tx:
        assert await tx.get_identity("acme") == full


async def test_an_owner_has_at_most_one_identity(storage: SqlStorage, records: Records) -> None:
    await insert_identity(storage, identity(records, credits=Credits("cr_first", 1)))

    with pytest.raises(Conflict):
        await insert_identity(storage, identity(records, credits=Credits("cr_second", 1)))

    assert [row["id"] for row in await records.rows("credits")] == ["cr_first"], "the clash wrote nothing"


async def test_updating_an_identity_replaces_meta_limits_and_credits(storage: SqlStorage, records: Records) -> None:
    first = await insert_identity(
        storage, identity(records, credits=Credits("cr_a", 10), ratelimits=(RateLimit("a", 1, 1000),))
    )
    changed = dataclasses.replace(
        first,
        meta={"tier": 2},
        credits=Credits("cr_a", 7, Refill(7, "daily")),
        ratelimits=(RateLimit("b", 2, 2000), RateLimit("c", 3, 3000)),
        updated_at=records.tick(),
    )
    async with storage.transaction() as tx:
        await tx.update_identity(changed)
    assert await storage.get_identity("acme") == changed

    unlimited = dataclasses.replace(changed, credits=None, ratelimits=(), updated_at=records.tick())
    async with storage.transaction() as tx:
        await tx.update_identity(unlimited)
    assert await storage.get_identity("acme") == unlimited
    assert await records.rows("credits") == [], "a balance nothing points to is dropped"
    assert await records.rows("ratelimits") == []


async def test_deleting_an_identity_takes_its_limits_and_credits_along(storage: SqlStorage, records: Records) -> None:
    await insert_identity(storage, identity(records, credits=Credits("cr_x", 3), ratelimits=(RateLimit("a", 1, 1),)))

    async with storage.transaction() as tx:
        assert await tx.delete_identity("acme") is True
        assert await tx.delete_identity("acme") is False

    assert await storage.get_identity("acme") is None
    assert await records.rows("credits") == []
    assert await records.rows("ratelimits") == []


async def test_verification_loads_the_identity_of_the_key_owner(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    shared = await insert_identity(
        storage, identity(records, credits=Credits("cr_shared", 9), ratelimits=(RateLimit("api", 5, 1000),))
    )
    owned = await records.insert_key(api.id, owner_id="acme")
    stranger = await records.insert_key(api.id, owner_id="someone else")

    bundle = await storage.load_for_verify(owned.digest)
    assert bundle is not None
    assert bundle.identity == shared
    other = await storage.load_for_verify(stranger.digest)
    assert other is not None
    assert other.identity is None


# -- credit operations -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "amount", "expected"),
    [("set", 3, 3), ("add", 5, 15), ("subtract", 4, 6), ("subtract", 11, 0), ("add", 2**53, 2**53)],
)
async def test_credit_operations_are_exact_and_bounded(
    storage: SqlStorage, records: Records, op: str, amount: int, expected: int
) -> None:
    api = await records.insert_api()
    await records.insert_key(api.id, credits=Credits("cr_ops", 10))

    async with storage.transaction() as tx:
        assert await tx.adjust_credits("cr_ops", op, amount, records.tick()) == expected
        assert await tx.adjust_credits("cr_missing", op, amount, records.tick()) is None

    assert [row["remaining"] for row in await records.rows("credits")] == [expected]


async def test_dropping_a_shared_balance_makes_every_holder_unlimited(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    first = await records.insert_key(api.id, credits=Credits("cr_pair", 10))
    second = records.key(api.id, credits=Credits("cr_pair", 10))
    async with storage.transaction() as tx:
        await tx.reroll_key(dataclasses.replace(first, rotated_to=second.id), second)
        assert sorted(await tx.credit_holders("cr_pair")) == sorted([first.digest, second.digest])
        assert sorted(await tx.drop_credits("cr_pair", records.tick())) == sorted([first.digest, second.digest])

    for key in (first, second):
        stored = await storage.get_key(key.id)
        assert stored is not None
        assert stored.credits is None
    assert await records.rows("credits") == []


async def test_concurrent_spends_and_additions_lose_nothing(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    await records.insert_key(api.id, credits=Credits("cr_busy", 50))

    async def add_one() -> None:
        async with storage.transaction() as tx:
            await tx.adjust_credits("cr_busy", "add", 1, records.tick())

    spends = [storage.spend_credits("cr_busy", 1, records.tick(), None) for _ in range(30)]
    await asyncio.gather(*spends, *(add_one() for _ in range(20)))

    assert [row["remaining"] for row in await records.rows("credits")] == [50 - 30 + 20]


# -- rerolls ---------------------------------------------------------------------------------------------------


async def test_a_rerolled_key_shares_the_balance_rather_than_copying_it(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    old = await records.insert_key(api.id, credits=Credits("cr_move", 10), ratelimits=(RateLimit("a", 1, 1000),))
    at = records.tick()
    new = records.key(
        api.id, at=at, credits=old.credits, ratelimits=old.ratelimits, rotated_from=old.id, owner_id=old.owner_id
    )
    retired = dataclasses.replace(old, expires_at=at + 60_000, rotated_to=new.id, updated_at=at)

    async with storage.transaction() as tx:
        await tx.reroll_key(retired, new)

    assert await storage.get_key(old.id) == retired
    assert await storage.get_key(new.id) == new
    assert [row["id"] for row in await records.rows("credits")] == ["cr_move"], "one balance, not two"
    assert await storage.spend_credits("cr_move", 3, records.tick(), None) == (True, 7)
    for key in (old, new):
        stored = await storage.get_key(key.id)
        assert stored is not None
        assert stored.credits is not None
        assert stored.credits.remaining == 7

    async with storage.transaction() as tx:
        assert await tx.delete_key(old.id) is True
    assert [row["id"] for row in await records.rows("credits")] == ["cr_move"], "still the new key's balance"


# -- group commit ---------------------------------------------------------------------------------------------


async def test_concurrent_spends_share_transactions_and_stay_exact(
    storage: SqlStorage, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await records.insert_api()
    await records.insert_key(api.id, credits=Credits("cr_group", 100))
    batches: list[int] = []
    run_batch = storage.driver.batch

    async def counting(statements: Any) -> Any:
        batches.append(len(statements))
        return await run_batch(statements)

    monkeypatch.setattr(storage.driver, "batch", counting)

    answers = await asyncio.gather(*(storage.spend_credits("cr_group", 1, records.tick(), None) for _ in range(300)))

    assert sum(1 for answer in answers if answer is not None and answer[0]) == 100
    assert sorted(answer[1] for answer in answers if answer is not None and answer[0]) == list(range(100))
    if storage.dialect == "sqlite":
        # One trip to SQLite's writer for many spends, not three trips each.
        assert 0 < len(batches) < 300 / 4
    assert [row["remaining"] for row in await records.rows("credits")] == [0]


async def test_identities_are_listed_newest_first_by_page_prefix_and_id(storage: SqlStorage, records: Records) -> None:
    made = [await insert_identity(storage, identity(records, owner)) for owner in ("acme", "acme-eu", "Acme", "zeta")]
    listed = await storage.list_identities(after=None, limit=10)
    assert [i.owner_id for i in listed] == ["zeta", "Acme", "acme-eu", "acme"]
    first = await storage.list_identities(after=None, limit=2)
    rest = await storage.list_identities(after=first[-1].id, limit=10)
    assert [i.id for i in first + rest] == [i.id for i in listed]
    # A prefix of the owner id, in its exact case; LIKE's wildcards are plain characters here.
    assert [i.owner_id for i in await storage.list_identities(after=None, limit=10, search="acme")] == [
        "acme-eu",
        "acme",
    ]
    assert await storage.list_identities(after=None, limit=10, search="ac%") == []
    [one] = await storage.list_identities(after=None, limit=10, identity_id=made[1].id)
    assert one == made[1]

"""Credits through the services (SPEC L3): set, add and subtract atomically in the database, unlimited credits,
and exactly N successes for N credits under concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from keystile.core.commands import CreditsOp, NewApi, NewCredits, NewKey
from keystile.core.models import AuditFilter
from keystile.core.ports import Change
from keystile.core.verify import KeyCheck
from keystile.errors import Conflict, Forbidden, InvalidInput, NotFound
from keystile.schemas import CreditsChange, convert, key_update
from keystile.service import Keystile
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


async def verify(ks: Keystile, admin: Admin, plain: str) -> tuple[str, int | None]:
    """Verify a key (spending one credit if it is good): its code and the credits left."""
    result = await ks.verification.verify(admin.actor.principal, KeyCheck(plain))
    return result.code, result.spent.remaining if result.spent is not None else None


async def remaining(ks: Keystile, admin: Admin, key_id: str) -> int | None:
    key = await ks.keys.get(admin.actor.principal, key_id)
    return key.credits.remaining if key.credits is not None else None


def change(op: str, amount: int | None) -> tuple[CreditsOp, int | None]:
    """A ``CreditsChange`` body as the route decodes it, and what it asks the service for."""
    body = convert({"op": op, "amount": amount}, CreditsChange)
    return body.op, body.amount


@pytest.fixture
async def limited(ks: Keystile, admin: Admin) -> tuple[str, str]:
    """A key with 10 credits, and its plain text."""
    api = await admin.api(NewApi(name="metered"))
    key, plain = await ks.keys.create(admin.actor, api.id, NewKey(credits=NewCredits(remaining=10)))
    return key.id, plain


# -- operations ----------------------------------------------------------------------------------------------------


async def test_set_add_and_subtract_change_the_balance_and_subtracting_stops_at_zero(
    ks: Keystile, admin: Admin, limited: tuple[str, str]
) -> None:
    key_id, _ = limited

    steps = [("add", 5, 15), ("subtract", 3, 12), ("set", 40, 40), ("subtract", 41, 0), ("add", 0, 0)]
    for op, amount, expected in steps:
        key = await ks.keys.change_credits(admin.actor, key_id, *change(op, amount))
        assert key.credits is not None
        assert key.credits.remaining == expected, (op, amount)
        assert await remaining(ks, admin, key_id) == expected

    entries = await admin.audit(AuditFilter(action="key.credits"))
    assert [(e.target, e.changes["op"], e.changes["amount"], e.changes["remaining"]) for e in entries] == [
        (key_id, "add", 5, [10, 15]),
        (key_id, "subtract", 3, [15, 12]),
        (key_id, "set", 40, [12, 40]),
        (key_id, "subtract", 41, [40, 0]),
        (key_id, "add", 0, [0, 0]),
    ]


async def test_a_cached_key_sees_a_credit_change_at_once(ks: Keystile, admin: Admin, limited: tuple[str, str]) -> None:
    key_id, plain = limited
    assert await verify(ks, admin, plain) == ("VALID", 9)

    await ks.keys.change_credits(admin.actor, key_id, *change("subtract", 9))
    assert await verify(ks, admin, plain) == ("USAGE_EXCEEDED", 0)

    await ks.keys.change_credits(admin.actor, key_id, *change("add", 2))
    assert await verify(ks, admin, plain) == ("VALID", 1)


async def test_unlimited_credits_can_be_set_but_not_added_to_or_subtracted_from(
    ks: Keystile, admin: Admin, storage: SqlStorage, limited: tuple[str, str]
) -> None:
    key_id, plain = limited

    unlimited = await ks.keys.change_credits(admin.actor, key_id, *change("set", None))
    assert unlimited.credits is None
    assert await storage.driver.fetchall("SELECT * FROM credits") == [], "the balance is gone"
    assert await verify(ks, admin, plain) == ("VALID", None)

    for op in ("add", "subtract"):
        with pytest.raises(Conflict) as caught:
            await ks.keys.change_credits(admin.actor, key_id, *change(op, 1))
        assert caught.value.code == "credits_unlimited"
    audited = len(await admin.audit(AuditFilter(action="key.credits")))
    assert (await ks.keys.change_credits(admin.actor, key_id, *change("set", None))).credits is None
    assert len(await admin.audit(AuditFilter(action="key.credits"))) == audited, "no change, no entry"

    limited_again = await ks.keys.change_credits(admin.actor, key_id, *change("set", 2))
    assert limited_again.credits is not None
    assert limited_again.credits.remaining == 2
    assert await verify(ks, admin, plain) == ("VALID", 1)
    assert await verify(ks, admin, plain) == ("VALID", 0)
    assert await verify(ks, admin, plain) == ("USAGE_EXCEEDED", 0)


@pytest.mark.parametrize("op", ["add", "subtract"])
async def test_null_is_only_for_set(ks: Keystile, admin: Admin, limited: tuple[str, str], op: str) -> None:
    key_id, _ = limited

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.change_credits(admin.actor, key_id, *change(op, None))

    assert caught.value.extra["field"] == "/amount"
    assert await remaining(ks, admin, key_id) == 10


async def test_credit_operations_need_keys_write_for_the_key_api(
    ks: Keystile, admin: Admin, limited: tuple[str, str]
) -> None:
    key_id, _ = limited
    elsewhere = await admin.api(NewApi(name="elsewhere"))
    reader = await admin.actor_with("keys.read")
    scoped = await admin.actor_with(f"api.{elsewhere.id}.keys.write")

    with pytest.raises(Forbidden):
        await ks.keys.change_credits(reader, key_id, *change("add", 1))
    with pytest.raises(NotFound):
        await ks.keys.change_credits(scoped, key_id, *change("add", 1))
    with pytest.raises(NotFound):
        await ks.keys.change_credits(admin.actor, "key_unknown", *change("add", 1))
    assert await remaining(ks, admin, key_id) == 10


async def test_keys_sharing_a_balance_see_a_change_together(
    ks: Keystile, admin: Admin, limited: tuple[str, str]
) -> None:
    old_id, old_plain = limited
    new, new_plain = await ks.keys.reroll(admin.actor, old_id, grace_period_ms=60_000)
    assert await verify(ks, admin, old_plain) == ("VALID", 9)
    assert await verify(ks, admin, new_plain) == ("VALID", 8)

    await ks.keys.change_credits(admin.actor, old_id, *change("add", 10))
    assert await remaining(ks, admin, new.id) == 18
    assert await verify(ks, admin, new_plain) == ("VALID", 17)

    await ks.keys.change_credits(admin.actor, new.id, *change("set", None))
    assert await remaining(ks, admin, old_id) is None
    assert await verify(ks, admin, old_plain) == ("VALID", None)
    assert await verify(ks, admin, new_plain) == ("VALID", None)


async def test_a_change_by_hand_is_published_so_that_counters_kept_elsewhere_reload(
    ks: Keystile, admin: Admin, limited: tuple[str, str]
) -> None:
    key_id, _ = limited
    key = await ks.keys.get(admin.actor.principal, key_id)
    assert key.credits is not None
    seen: list[Change] = []
    ks.ctx.bus.subscribe(seen.extend)

    await ks.keys.change_credits(admin.actor, key_id, *change("add", 1))
    await ks.keys.update(admin.actor, key_id, key_update({"credits": {"remaining": 3}}))

    assert seen.count(Change("credits", key.credits.id)) == 2
    assert seen.count(Change("key", key.digest.hex())) == 2


# -- exactness under concurrency -----------------------------------------------------------------------------------


async def test_100_credits_give_exactly_100_valid_out_of_300_concurrent_verifications(
    ks: Keystile, admin: Admin
) -> None:
    api = await admin.api()
    key, plain = await ks.keys.create(admin.actor, api.id, NewKey(credits=NewCredits(remaining=100)))

    results = await asyncio.gather(*(verify(ks, admin, plain) for _ in range(300)))

    assert Counter(code for code, _ in results) == {"VALID": 100, "USAGE_EXCEEDED": 200}
    assert sorted(left for code, left in results if code == "VALID" and left is not None) == list(range(100))
    assert await remaining(ks, admin, key.id) == 0


async def test_credits_added_while_verifications_run_are_all_spendable_and_no_more(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    key, plain = await ks.keys.create(admin.actor, api.id, NewKey(credits=NewCredits(remaining=100)))
    additions = [ks.keys.change_credits(admin.actor, key.id, *change("add", 10)) for _ in range(5)]

    results, _ = await asyncio.gather(
        asyncio.gather(*(verify(ks, admin, plain) for _ in range(300))), asyncio.gather(*additions)
    )

    codes = Counter(code for code, _ in results)
    # Whatever the interleaving, every credit is spent once: 100 at first plus 50 added.
    assert codes["VALID"] + (await remaining(ks, admin, key.id) or 0) == 150
    assert codes["VALID"] + codes["USAGE_EXCEEDED"] == 300

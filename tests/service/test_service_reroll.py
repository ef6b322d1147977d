"""Rerolls through the services (SPEC R2): a new key with the same settings, credits that move exactly once, and
an old key that works through its grace period and verifies as EXPIRED after it (issue 3, Done when 5)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewCredits, NewIdentity, NewKey
from keystile.core.models import AuditFilter, RateLimit
from keystile.core.verify import KeyCheck
from keystile.errors import Conflict, Forbidden, NotFound
from keystile.schemas import (
    key_out,
)
from keystile.service import CLI_ACTOR, Keystile
from keystile.storage import SqlStorage, open_storage

if TYPE_CHECKING:
    from tests.service.conftest import Admin

HOUR_MS = 3_600_000


async def verify(ks: Keystile, admin: Admin, plain: str) -> tuple[str, int | None]:
    result = await ks.verification.verify(admin.actor.principal, KeyCheck(plain))
    return result.code, result.spent.remaining if result.spent is not None else None


async def balances(storage: SqlStorage) -> list[tuple[str, int]]:
    rows = await storage.driver.fetchall("SELECT id, remaining FROM credits ORDER BY id")
    return [(row["id"], int(row["remaining"])) for row in rows]


async def test_a_rerolled_pair_draws_on_one_balance_through_the_grace_period_and_only_the_new_key_after_it(
    ks: Keystile, admin: Admin, storage: SqlStorage, clock: ManualClock
) -> None:
    api = await admin.api()
    old, old_plain = await ks.keys.create(admin.actor, api.id, NewKey(credits=NewCredits(remaining=100)))
    assert old.credits is not None
    assert await balances(storage) == [(old.credits.id, 100)]

    new, new_plain = await ks.keys.reroll(admin.actor, old.id, grace_period_ms=HOUR_MS)

    # During the grace period both keys verify and draw on the one balance: 3 via the old key, 2 via the new.
    assert [await verify(ks, admin, old_plain) for _ in range(3)] == [("VALID", 99), ("VALID", 98), ("VALID", 97)]
    assert [await verify(ks, admin, new_plain) for _ in range(2)] == [("VALID", 96), ("VALID", 95)]
    # The credits moved rather than being copied: one balance, the old key's, now linked to both keys.
    assert new.credits is not None
    assert new.credits.id == old.credits.id
    assert await balances(storage) == [(old.credits.id, 95)]
    for key_id in (old.id, new.id):
        shown = await ks.keys.get(admin.actor.principal, key_id)
        assert shown.credits is not None
        assert shown.credits.remaining == 95

    clock.advance(HOUR_MS / 1000 - 1)
    assert await verify(ks, admin, old_plain) == ("VALID", 94), "one second before the end of the grace period"

    clock.advance(1)
    assert await verify(ks, admin, old_plain) == ("EXPIRED", None)
    assert await verify(ks, admin, new_plain) == ("VALID", 93)
    assert await verify(ks, admin, old_plain) == ("EXPIRED", None)
    assert await balances(storage) == [(old.credits.id, 93)], "the expired key spent nothing"


async def test_under_concurrency_no_credit_of_a_rerolled_pair_is_spent_twice(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    old, old_plain = await ks.keys.create(admin.actor, api.id, NewKey(credits=NewCredits(remaining=40)))
    _, new_plain = await ks.keys.reroll(admin.actor, old.id, grace_period_ms=HOUR_MS)

    results = await asyncio.gather(*(verify(ks, admin, (old_plain, new_plain)[i % 2]) for i in range(120)))

    assert Counter(code for code, _ in results) == {"VALID": 40, "USAGE_EXCEEDED": 80}
    assert sorted(left for code, left in results if code == "VALID" and left is not None) == list(range(40))


async def test_the_new_key_has_the_old_key_settings_and_the_two_are_linked(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    api = await admin.api()
    await ks.apis.put_role(admin.actor, api.id, name="reader", permissions=["docs.read"])
    spec = NewKey(
        name="billing",
        owner_id="acme",
        meta={"plan": "pro"},
        permissions=["docs.write"],
        roles=["reader"],
        expires_at=datetime(2031, 1, 1, tzinfo=UTC),
        ratelimits=[RateLimit(name="api", limit=5, duration_ms=1000)],
        ip_allowlist=["10.0.0.0/8"],
        enabled=False,
    )
    old, _ = await ks.keys.create(admin.actor, api.id, spec)
    clock.advance(60)

    new, plain = await ks.keys.reroll(
        admin.actor, old.id, grace_period_ms=0, expires_at=datetime(2032, 1, 1, tzinfo=UTC)
    )

    assert plain.startswith("ks_")
    assert new.id != old.id
    assert new.digest != old.digest
    copied = ("name", "owner_id", "meta", "permissions", "roles", "ratelimits", "ip_allowlist", "enabled", "credits")
    assert {f: getattr(new, f) for f in copied} == {f: getattr(old, f) for f in copied}
    assert key_out(new).expires_at == "2032-01-01T00:00:00.000Z", "the new expiry comes from the body"
    assert new.created_at == old.created_at + 60_000
    assert new.rotated_from == old.id
    retired = await ks.keys.get(admin.actor.principal, old.id)
    assert retired.rotated_to == new.id
    assert retired.expires_at == new.created_at, "no grace: the old key expires now"
    assert await ks.keys.get(admin.actor.principal, new.id) == new


async def test_the_old_key_keeps_an_earlier_expiry_of_its_own(ks: Keystile, admin: Admin, clock: ManualClock) -> None:
    api = await admin.api()
    soon = datetime.fromtimestamp(clock.now() + 600, tz=UTC)
    old, old_plain = await ks.keys.create(admin.actor, api.id, NewKey(expires_at=soon))

    await ks.keys.reroll(admin.actor, old.id, grace_period_ms=24 * HOUR_MS)

    assert (await ks.keys.get(admin.actor.principal, old.id)).expires_at == old.expires_at
    clock.advance(600)
    assert (await verify(ks, admin, old_plain))[0] == "EXPIRED"


async def test_a_key_drawing_on_its_identity_keeps_doing_so_after_a_reroll(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    await ks.identities.create(admin.actor, NewIdentity(owner_id="acme", credits=NewCredits(remaining=5)))
    old, old_plain = await ks.keys.create(admin.actor, api.id, NewKey(owner_id="acme"))

    new, new_plain = await ks.keys.reroll(admin.actor, old.id, grace_period_ms=HOUR_MS)

    assert new.credits is None
    assert await verify(ks, admin, old_plain) == ("VALID", 4)
    assert await verify(ks, admin, new_plain) == ("VALID", 3)


async def test_a_revoked_key_or_one_rerolled_already_cannot_be_rerolled(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    revoked, _ = await ks.keys.create(admin.actor, api.id, NewKey())
    await ks.keys.revoke(admin.actor, revoked.id)
    rotated, _ = await ks.keys.create(admin.actor, api.id, NewKey())
    successor, _ = await ks.keys.reroll(admin.actor, rotated.id, grace_period_ms=HOUR_MS)

    for key_id, code in ((revoked.id, "key_revoked"), (rotated.id, "key_rotated")):
        with pytest.raises(Conflict) as caught:
            await ks.keys.reroll(admin.actor, key_id)
        assert caught.value.code == code
    assert await ks.storage.count_keys(api.id) == 3, "nothing was created"

    # The successor can be rerolled in turn.
    third, _ = await ks.keys.reroll(admin.actor, successor.id)
    assert third.rotated_from == successor.id


async def test_a_reroll_is_audited_without_the_key_and_needs_keys_write(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    old, _ = await ks.keys.create(admin.actor, api.id, NewKey())
    reader = await admin.actor_with("keys.read")
    other = await admin.api()
    scoped = await admin.actor_with(f"api.{other.id}.keys.write")
    with pytest.raises(Forbidden):
        await ks.keys.reroll(reader, old.id)
    with pytest.raises(NotFound):
        await ks.keys.reroll(scoped, old.id)

    new, plain = await ks.keys.reroll(admin.actor, old.id, grace_period_ms=HOUR_MS)

    [entry] = await admin.audit(AuditFilter(action="key.reroll"))
    assert entry.target == old.id
    assert entry.actor == admin.actor.id
    assert entry.changes["rotated_to"] == new.id
    assert entry.changes["start"] == new.start
    assert entry.changes["grace_period_ms"] == HOUR_MS
    retired = await ks.keys.get(admin.actor.principal, old.id)
    assert entry.changes["expires_at"] == [None, key_out(retired).expires_at]
    text = entry.canonical().decode()
    assert plain not in text
    assert plain.rpartition("_")[2] not in text


@pytest.mark.postgres
async def test_two_instances_on_one_database_never_spend_a_credit_of_a_rerolled_pair_twice(
    fresh_pg_url: str, clock: ManualClock
) -> None:
    stores = [await open_storage(fresh_pg_url, clock) for _ in range(2)]
    await stores[0].migrate()
    first, second = (Keystile.create(store, Settings(database_url=fresh_pg_url), clock) for store in stores)
    try:
        api = await first.apis.create(CLI_ACTOR, NewApi(name="shared"))
        old, old_plain = await first.keys.create(CLI_ACTOR, api.id, NewKey(credits=NewCredits(remaining=50)))
        _, new_plain = await second.keys.reroll(CLI_ACTOR, old.id, grace_period_ms=HOUR_MS)

        # Each instance verifies both keys of the pair at once, from its own cache and connection pool.
        calls = [(ks.ctx.verifier, plain) for ks in (first, second) for plain in (old_plain, new_plain)] * 40
        results = await asyncio.gather(*(verifier.verify(plain) for verifier, plain in calls))

        assert Counter(result.code for result in results) == {"VALID": 50, "USAGE_EXCEEDED": 110}
        spent = sorted(
            r.spent.remaining for r in results if r.code == "VALID" and r.spent and r.spent.remaining is not None
        )
        assert spent == list(range(50))
    finally:
        for ks in (first, second):
            await ks.close()

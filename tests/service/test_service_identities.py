"""Identities through the services (SPEC K5, L1, L3): one owner's rate limits and credits, shared by all of its
keys in every API; a key's own limit of the same name replaces the identity's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewCredits, NewIdentity, NewKey
from keystile.core.models import AuditFilter, RateLimit
from keystile.errors import Conflict, Forbidden, InvalidInput, NotFound
from keystile.http.verify import check_of
from keystile.schemas import (
    VerifyRateLimit,
    VerifyRequest,
    identity_out,
    identity_update,
    to_builtins,
)
from keystile.service import Keystile

if TYPE_CHECKING:
    from tests.service.conftest import Admin


async def verify(
    ks: Keystile, admin: Admin, plain: str, ratelimits: list[VerifyRateLimit] | None = None
) -> tuple[str, int | None, dict[str, int]]:
    """Verify; the code, the credits left, and each limit's remaining capacity by name."""
    result = await ks.verification.verify(
        admin.actor.principal, check_of(VerifyRequest(key=plain, ratelimits=ratelimits))
    )
    spent = result.spent
    remaining = spent.remaining if spent is not None else None
    limits = {state.name: state.remaining for state in spent.ratelimits} if spent is not None else {}
    return result.code, remaining, limits


def per_minute(name: str, limit: int) -> RateLimit:
    return RateLimit(name=name, limit=limit, duration_ms=60_000)


# -- CRUD ----------------------------------------------------------------------------------------------------------


async def test_an_identity_is_created_read_patched_and_deleted_with_audit(ks: Keystile, admin: Admin) -> None:
    created = await ks.identities.create(
        admin.actor,
        NewIdentity(
            owner_id="acme", meta={"plan": "pro"}, ratelimits=[per_minute("api", 10)], credits=NewCredits(remaining=50)
        ),
    )
    assert created.id.startswith("idn_")
    assert to_builtins(identity_out(await ks.identities.get(admin.actor.principal, "acme"))) == to_builtins(
        identity_out(created)
    )

    patched = await ks.identities.update(
        admin.actor,
        "acme",
        identity_update({"meta": {"plan": None, "seats": 5}, "credits": {"remaining": 70}, "ratelimits": None}),
    )
    assert patched.meta == {"seats": 5}
    assert patched.ratelimits == ()
    assert patched.credits is not None
    assert patched.credits.remaining == 70
    assert created.credits is not None
    assert patched.credits.id == created.credits.id, "a patch keeps the balance, it does not replace it"
    unchanged = await ks.identities.update(admin.actor, "acme", identity_update({"meta": {"seats": 5}}))
    assert unchanged == patched

    await ks.identities.delete(admin.actor, "acme")
    with pytest.raises(NotFound) as caught:
        await ks.identities.get(admin.actor.principal, "acme")
    assert caught.value.code == "identity_not_found"
    with pytest.raises(NotFound):
        await ks.identities.delete(admin.actor, "acme")

    entries = await admin.audit(AuditFilter(target=created.id))
    assert [entry.action for entry in entries] == ["identity.create", "identity.update", "identity.delete"]
    assert entries[0].changes["owner_id"] == "acme"
    assert entries[1].changes["credits"] == [{"remaining": 50, "refill": None}, {"remaining": 70, "refill": None}]
    assert set(entries[1].changes) == {"meta", "credits", "ratelimits"}


async def test_an_owner_has_one_identity(ks: Keystile, admin: Admin) -> None:
    await ks.identities.create(admin.actor, NewIdentity(owner_id="acme"))

    with pytest.raises(Conflict) as caught:
        await ks.identities.create(admin.actor, NewIdentity(owner_id="acme"))

    assert caught.value.code == "identity_exists"
    assert len(await admin.audit(AuditFilter(action="identity.create"))) == 1


@pytest.mark.parametrize(
    ("patch", "code", "field"),
    [
        ({"owner_id": "other"}, "invalid_request", "/owner_id"),
        ({"ratelimits": [{"name": "a", "limit": 1, "duration_ms": 1}] * 2}, "duplicate_ratelimit", "/ratelimits"),
        ({"meta": {"blob": "x" * (16 * 1024)}}, "meta_too_large", "/meta"),
        ({"credits": {"remaining": -1}}, "invalid_request", "/credits/remaining"),
        ({"meta": {"bad": "\x00"}}, "invalid_character", "/meta/bad"),
    ],
)
async def test_a_bad_patch_names_the_field_and_changes_nothing(
    ks: Keystile, admin: Admin, patch: dict[str, object], code: str, field: str
) -> None:
    before = await ks.identities.create(admin.actor, NewIdentity(owner_id="acme"))

    with pytest.raises(InvalidInput) as caught:
        await ks.identities.update(admin.actor, "acme", identity_update(patch))

    assert (caught.value.code, caught.value.extra.get("field")) == (code, field)
    assert await ks.identities.get(admin.actor.principal, "acme") == before


async def test_identities_need_the_deployment_wide_identity_permissions(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    await ks.identities.create(admin.actor, NewIdentity(owner_id="acme"))
    reader = await admin.actor_with("identities.read")
    scoped = await admin.actor_with(f"api.{api.id}.keys.write")

    assert (await ks.identities.get(reader.principal, "acme")).owner_id == "acme"
    for actor in (reader, scoped):
        with pytest.raises(Forbidden):
            await ks.identities.create(actor, NewIdentity(owner_id="other"))
        with pytest.raises(Forbidden):
            await ks.identities.update(actor, "acme", identity_update({"meta": {"x": 1}}))
        with pytest.raises(Forbidden):
            await ks.identities.delete(actor, "acme")
    with pytest.raises(Forbidden):
        await ks.identities.get(scoped.principal, "acme")


# -- sharing ---------------------------------------------------------------------------------------------------------


async def test_keys_of_one_owner_in_two_apis_share_the_identity_limits_and_credits(ks: Keystile, admin: Admin) -> None:
    weather, maps = await admin.api(NewApi(name="weather")), await admin.api(NewApi(name="maps"))
    await ks.identities.create(
        admin.actor,
        NewIdentity(owner_id="acme", ratelimits=[per_minute("api", 4)], credits=NewCredits(remaining=3)),
    )
    _, first = await ks.keys.create(admin.actor, weather.id, NewKey(owner_id="acme"))
    _, second = await ks.keys.create(admin.actor, maps.id, NewKey(owner_id="acme"))
    _, stranger = await ks.keys.create(admin.actor, maps.id, NewKey(owner_id="someone else"))

    assert await verify(ks, admin, first) == ("VALID", 2, {"api": 3})
    assert await verify(ks, admin, second) == ("VALID", 1, {"api": 2})
    assert await verify(ks, admin, first) == ("VALID", 0, {"api": 1})
    # The credits are gone for both keys; the refused request spent no rate-limit capacity (SPEC V2).
    assert await verify(ks, admin, second) == ("USAGE_EXCEEDED", 0, {"api": 1})
    # A key of another owner draws on nothing of the identity's.
    assert await verify(ks, admin, stranger) == ("VALID", None, {})

    # The shared limit holds on its own, too: one request left for the pair, then RATE_LIMITED.
    await ks.identities.update(admin.actor, "acme", identity_update({"credits": None}))
    assert await verify(ks, admin, second) == ("VALID", None, {"api": 0})
    code, _, _ = await verify(ks, admin, first)
    assert code == "RATE_LIMITED"


async def test_a_key_limit_replaces_the_identity_limit_of_the_same_name(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    await ks.identities.create(
        admin.actor, NewIdentity(owner_id="acme", ratelimits=[per_minute("api", 2), per_minute("burst", 100)])
    )
    _, own = await ks.keys.create(admin.actor, api.id, NewKey(owner_id="acme", ratelimits=[per_minute("api", 5)]))
    _, shared = await ks.keys.create(admin.actor, api.id, NewKey(owner_id="acme"))

    assert await verify(ks, admin, own) == ("VALID", None, {"api": 4, "burst": 99})
    assert await verify(ks, admin, shared) == ("VALID", None, {"api": 1, "burst": 98})
    assert await verify(ks, admin, shared) == ("VALID", None, {"api": 0, "burst": 97})
    assert (await verify(ks, admin, shared))[0] == "RATE_LIMITED"
    # The key with its own "api" limit is not held back by the identity's, which its sibling used up.
    assert await verify(ks, admin, own) == ("VALID", None, {"api": 3, "burst": 96})


async def test_a_key_with_credits_of_its_own_does_not_draw_on_the_identity(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    await ks.identities.create(admin.actor, NewIdentity(owner_id="acme", credits=NewCredits(remaining=100)))
    _, own = await ks.keys.create(admin.actor, api.id, NewKey(owner_id="acme", credits=NewCredits(remaining=1)))

    assert (await verify(ks, admin, own))[:2] == ("VALID", 0)
    assert (await verify(ks, admin, own))[:2] == ("USAGE_EXCEEDED", 0)
    identity = await ks.identities.get(admin.actor.principal, "acme")
    assert identity.credits is not None
    assert identity.credits.remaining == 100


async def test_cached_keys_of_the_owner_follow_identity_changes_at_once(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    api = await admin.api()
    _, plain = await ks.keys.create(admin.actor, api.id, NewKey(owner_id="acme"))
    assert await verify(ks, admin, plain) == ("VALID", None, {})
    assert ks.ctx.verifier.verify_cached(plain) is not None, "cached: a stale answer would show"

    await ks.identities.create(admin.actor, NewIdentity(owner_id="acme", credits=NewCredits(remaining=1)))
    assert (await verify(ks, admin, plain))[:2] == ("VALID", 0)

    await ks.identities.update(
        admin.actor, "acme", identity_update({"ratelimits": [{"name": "api", "limit": 1, "duration_ms": 1000}]})
    )
    await ks.identities.update(admin.actor, "acme", identity_update({"credits": {"remaining": 5}}))
    assert await verify(ks, admin, plain) == ("VALID", 4, {"api": 0})

    await ks.identities.delete(admin.actor, "acme")
    assert await verify(ks, admin, plain) == ("VALID", None, {})


async def test_a_named_limit_of_the_identity_can_be_asked_for(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    limit = RateLimit(name="expensive", limit=10, duration_ms=60_000, auto_apply=False)
    await ks.identities.create(admin.actor, NewIdentity(owner_id="acme", ratelimits=[limit]))
    _, plain = await ks.keys.create(admin.actor, api.id, NewKey(owner_id="acme"))

    assert await verify(ks, admin, plain) == ("VALID", None, {})
    named = [VerifyRateLimit(name="expensive", cost=4)]
    assert await verify(ks, admin, plain, ratelimits=named) == ("VALID", None, {"expensive": 6})


# -- finding and listing (the Unkey-compatible routes know identities by id as well as by owner) ------------------


async def test_an_identity_is_found_by_its_owner_or_its_id_and_listed_newest_first(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    made = []
    for owner in ("acme", "idn_x", "beta"):
        clock.advance(1)  # ids order by the millisecond they were made in
        made.append(await ks.identities.create(admin.actor, NewIdentity(owner_id=owner)))
    assert await ks.identities.find(admin.actor.principal, "acme") == made[0]
    assert await ks.identities.find(admin.actor.principal, made[0].id) == made[0]
    # An owner id wins over an identity id it happens to look like.
    assert await ks.identities.find(admin.actor.principal, "idn_x") == made[1]
    with pytest.raises(NotFound):
        await ks.identities.find(admin.actor.principal, "idn_0000000000000000000000")

    first = await ks.identities.list(admin.actor.principal, cursor=None, limit=2)
    assert [i.owner_id for i in first.items] == ["beta", "idn_x"]
    rest = await ks.identities.list(admin.actor.principal, cursor=first.next_cursor, limit=2)
    assert ([i.owner_id for i in rest.items], rest.next_cursor) == (["acme"], None)
    found = await ks.identities.list(admin.actor.principal, cursor=None, limit=10, search="be")
    assert [i.owner_id for i in found.items] == ["beta"]

    keys_only = await admin.actor_with("keys.read")
    with pytest.raises(Forbidden):
        await ks.identities.list(keys_only.principal, cursor=None, limit=None)
    with pytest.raises(Forbidden):
        await ks.identities.find(keys_only.principal, "acme")

"""Keys through the services (SPEC K4, R1): merge-patch updates, bulk create, validation, revoke and delete."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewCredits, NewKey, NewRootKey
from keystile.core.models import AuditFilter, KeyFilter, RateLimit, Refill
from keystile.core.timefmt import from_rfc3339, to_rfc3339
from keystile.core.verify import KeyCheck
from keystile.errors import InvalidInput, NotFound
from keystile.schemas import (
    key_out,
    key_update,
    to_builtins,
)
from keystile.service import Keystile
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def full_spec() -> NewKey:
    return NewKey(
        name="billing worker",
        owner_id="user_1",
        meta={"plan": "pro", "limits": {"seats": 5, "regions": ["eu", "us"]}, "city": "Zürich"},
        permissions=["docs.read", "docs.write"],
        roles=["reader"],
        expires_at=at("2031-01-01T00:00:00Z"),
        credits=NewCredits(remaining=100, refill=Refill(amount=100, interval="monthly", day=1)),
        ratelimits=[RateLimit(name="burst", limit=10, duration_ms=1000)],
        ip_allowlist=["10.0.0.0/8"],
    )


@pytest.fixture
async def api_id(admin: Admin) -> str:
    api = await admin.api(NewApi(name="keys under test"))
    await admin.ks.apis.put_role(admin.actor, api.id, name="reader", permissions=["docs.read"])
    await admin.ks.apis.put_role(admin.actor, api.id, name="writer", permissions=["docs.write"])
    return api.id


def doc(key: Any) -> dict[str, Any]:
    out: dict[str, Any] = to_builtins(key_out(key))
    return out


# -- create ---------------------------------------------------------------------------------------------------


async def test_a_created_key_reads_back_as_it_was_returned(ks: Keystile, admin: Admin, api_id: str) -> None:
    key, plain = await ks.keys.create(admin.actor, api_id, full_spec())

    assert plain.startswith("ks_")
    assert key.start == plain[:7]
    assert doc(await ks.keys.get(admin.actor.principal, key.id)) == doc(key)
    assert doc(key)["credits"] == {"remaining": 100, "refill": {"amount": 100, "interval": "monthly", "day": 1}}
    assert doc(key)["expires_at"] == "2031-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "expires_at",
    # After 2038-01-19 a float timestamp in seconds cannot hold every millisecond: these came back 1 ms early.
    ["2038-01-19T08:18:07.483Z", "2038-01-20T01:52:40.127Z", "2031-05-05T05:05:05.005Z", "2031-05-05T05:05:05+02:00"],
)
async def test_an_expiry_is_kept_to_the_millisecond(ks: Keystile, admin: Admin, api_id: str, expires_at: str) -> None:
    expected = to_rfc3339(from_rfc3339(expires_at))
    key, _ = await ks.keys.create(admin.actor, api_id, NewKey(expires_at=at(expires_at)))

    assert doc(key)["expires_at"] == expected
    assert doc(await ks.keys.get(admin.actor.principal, key.id))["expires_at"] == expected
    # A patch that does not touch the expiry leaves it exactly as it was, and records no change to it.
    updated = await ks.keys.update(admin.actor, key.id, key_update({"name": "renamed"}))
    assert doc(updated)["expires_at"] == expected
    [entry] = await admin.audit(AuditFilter(action="key.update"))
    assert set(entry.changes) == {"name"}


async def test_bulk_create_is_all_or_nothing_and_names_the_failing_index(
    ks: Keystile, admin: Admin, api_id: str
) -> None:
    specs = [NewKey(name="a"), NewKey(name="b", roles=["reader"]), NewKey(name="c", roles=["ghost"])]
    audit_before = len(await admin.audit())

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.create_many(admin.actor, api_id, specs)

    assert caught.value.extra["index"] == 2
    assert caught.value.extra["field"] == "/keys/2/roles"
    assert caught.value.code == "unknown_role"
    assert await ks.storage.count_keys(api_id) == 0
    assert len(await admin.audit()) == audit_before

    created = await ks.keys.create_many(admin.actor, api_id, specs[:2])
    assert [key.name for key, _ in created] == ["a", "b"]
    assert len({plain for _, plain in created}) == 2
    assert await ks.storage.count_keys(api_id) == 2


@pytest.mark.parametrize(
    ("spec", "code", "field"),
    [
        (NewKey(roles=["ghost"]), "unknown_role", "/roles"),
        (NewKey(meta={"blob": "x" * (16 * 1024)}), "meta_too_large", "/meta"),
        (
            NewKey(
                ratelimits=[
                    RateLimit(name="r", limit=1, duration_ms=1),
                    RateLimit(name="r", limit=2, duration_ms=2),
                ]
            ),
            "duplicate_ratelimit",
            "/ratelimits",
        ),
        (NewKey(permissions=["has space"]), "invalid_permission", None),
        (NewKey(ip_allowlist=["10.0.0.300/8"]), "invalid_cidr", None),
        (
            NewKey(credits=NewCredits(remaining=1, refill=Refill(amount=1, interval="daily", day=3))),
            "invalid_refill",
            "/credits/refill/day",
        ),
    ],
)
async def test_a_key_that_breaks_a_rule_is_refused_and_nothing_is_written(
    ks: Keystile, admin: Admin, api_id: str, spec: NewKey, code: str, field: str | None
) -> None:
    audit_before = len(await admin.audit())

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.create(admin.actor, api_id, spec)

    assert caught.value.code == code
    if field is not None:
        assert caught.value.extra["field"] == field
    assert await ks.storage.count_keys(api_id) == 0
    assert len(await admin.audit()) == audit_before


async def test_meta_just_under_the_limit_is_accepted(ks: Keystile, admin: Admin, api_id: str) -> None:
    meta = {"blob": "x" * (16 * 1024 - len('{"blob":""}'))}

    key, _ = await ks.keys.create(admin.actor, api_id, NewKey(meta=meta))

    assert (await ks.keys.get(admin.actor.principal, key.id)).meta == meta


# -- update (JSON Merge Patch, RFC 7396) ----------------------------------------------------------------------


async def test_a_patch_changes_only_what_it_names(ks: Keystile, admin: Admin, api_id: str, clock: ManualClock) -> None:
    key, _ = await ks.keys.create(admin.actor, api_id, full_spec())
    clock.advance(5)

    updated = await ks.keys.update(admin.actor, key.id, key_update({"name": "renamed", "enabled": False}))

    before, after = doc(key), doc(updated)
    assert after["name"] == "renamed"
    assert after["enabled"] is False
    assert after["updated_at"] != before["updated_at"]
    unchanged = set(before) - {"name", "enabled", "updated_at"}
    assert {field: after[field] for field in unchanged} == {field: before[field] for field in unchanged}
    assert doc(await ks.keys.get(admin.actor.principal, key.id)) == after


async def test_null_resets_a_field_to_its_default(ks: Keystile, storage: SqlStorage, admin: Admin, api_id: str) -> None:
    key, _ = await ks.keys.create(admin.actor, api_id, full_spec())
    nulls = ["name", "owner_id", "meta", "permissions", "roles", "expires_at", "credits", "ratelimits", "ip_allowlist"]

    updated = await ks.keys.update(admin.actor, key.id, key_update(dict.fromkeys(nulls)))

    got = doc(await ks.keys.get(admin.actor.principal, key.id))
    assert got == doc(updated)
    assert {field: got[field] for field in nulls} == {
        "name": None,
        "owner_id": None,
        "meta": {},
        "permissions": [],
        "roles": [],
        "expires_at": None,
        "credits": None,
        "ratelimits": [],
        "ip_allowlist": [],
    }
    rows = await storage.driver.fetchall("SELECT id FROM credits")
    assert rows == [], "the key's balance went with its credits"


async def test_meta_merges_member_by_member(ks: Keystile, admin: Admin, api_id: str) -> None:
    key, _ = await ks.keys.create(
        admin.actor, api_id, NewKey(meta={"a": 1, "b": {"c": 1, "d": 2}, "list": [1, 2], "gone": True})
    )

    updated = await ks.keys.update(
        admin.actor, key.id, key_update({"meta": {"b": {"c": None, "e": 3}, "list": [3], "gone": None, "new": "ü"}})
    )

    expected = {"a": 1, "b": {"d": 2, "e": 3}, "list": [3], "new": "ü"}
    assert updated.meta == expected
    assert (await ks.keys.get(admin.actor.principal, key.id)).meta == expected


async def test_credits_merge_and_keep_their_balance(ks: Keystile, admin: Admin, api_id: str) -> None:
    key, _ = await ks.keys.create(admin.actor, api_id, full_spec())
    assert key.credits is not None

    spent = await ks.keys.update(admin.actor, key.id, key_update({"credits": {"remaining": 7}}))
    assert doc(spent)["credits"] == {"remaining": 7, "refill": {"amount": 100, "interval": "monthly", "day": 1}}
    assert spent.credits is not None
    assert spent.credits.id == key.credits.id, "the same balance, updated in place"

    no_refill = await ks.keys.update(admin.actor, key.id, key_update({"credits": {"refill": None}}))
    assert doc(no_refill)["credits"] == {"remaining": 7, "refill": None}

    plain, _ = await ks.keys.create(admin.actor, api_id, NewKey())
    given = await ks.keys.update(admin.actor, plain.id, key_update({"credits": {"remaining": 3}}))
    assert doc(given)["credits"] == {"remaining": 3, "refill": None}
    # A refill alone is no balance: "remaining" has nothing to merge into on a key without credits.
    unlimited, _ = await ks.keys.create(admin.actor, api_id, NewKey())
    with pytest.raises(InvalidInput):
        await ks.keys.update(
            admin.actor, unlimited.id, key_update({"credits": {"refill": {"amount": 1, "interval": "daily"}}})
        )


async def test_a_patch_replaces_lists_and_rate_limits_as_a_whole(ks: Keystile, admin: Admin, api_id: str) -> None:
    key, _ = await ks.keys.create(admin.actor, api_id, full_spec())

    updated = await ks.keys.update(
        admin.actor,
        key.id,
        key_update(
            {
                "permissions": ["admin"],
                "roles": ["writer", "reader"],
                "ratelimits": [{"name": "daily", "limit": 1000, "duration_ms": 86_400_000}],
                "ip_allowlist": ["192.168.1.7/24"],
            }
        ),
    )

    got = doc(await ks.keys.get(admin.actor.principal, key.id))
    assert got == doc(updated)
    assert got["permissions"] == ["admin"]
    assert got["roles"] == ["writer", "reader"]
    assert got["ratelimits"] == [{"name": "daily", "limit": 1000, "duration_ms": 86_400_000, "auto_apply": True}]
    assert got["ip_allowlist"] == ["192.168.1.0/24"]


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"roles": ["ghost"]}, "unknown_role"),
        ({"meta": {"blob": "x" * (16 * 1024)}}, "meta_too_large"),
        ({"ratelimits": [{"name": "a", "limit": 1, "duration_ms": 1}] * 2}, "duplicate_ratelimit"),
        ({"enabled": None}, "invalid_request"),
        ({"nme": "typo"}, "invalid_request"),
        ({"expires_at": "tomorrow"}, "invalid_request"),
    ],
)
async def test_a_patch_that_breaks_a_rule_changes_nothing(
    ks: Keystile, admin: Admin, api_id: str, patch: dict[str, Any], code: str
) -> None:
    key, _ = await ks.keys.create(admin.actor, api_id, full_spec())
    audit_before = len(await admin.audit())

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.update(admin.actor, key.id, key_update(patch))

    assert caught.value.code == code
    assert doc(await ks.keys.get(admin.actor.principal, key.id)) == doc(key)
    assert len(await admin.audit()) == audit_before


async def test_an_empty_patch_changes_nothing_and_is_not_audited(ks: Keystile, admin: Admin, api_id: str) -> None:
    key, _ = await ks.keys.create(admin.actor, api_id, full_spec())
    audit_before = len(await admin.audit())

    for patch in ({}, {"name": key.name}, {"meta": {"plan": "pro"}}):
        assert doc(await ks.keys.update(admin.actor, key.id, key_update(patch))) == doc(key)

    assert len(await admin.audit()) == audit_before


# -- revoke, delete, list ---------------------------------------------------------------------------------------


async def test_revoking_twice_leaves_the_record_as_the_first_revocation_left_it(
    ks: Keystile, admin: Admin, api_id: str, clock: ManualClock
) -> None:
    key, _ = await ks.keys.create(admin.actor, api_id, NewKey())
    clock.advance(1)
    first = await ks.keys.revoke(admin.actor, key.id)
    clock.advance(1)

    second = await ks.keys.revoke(admin.actor, key.id)

    assert first.revoked_at is not None
    assert second == first
    assert await ks.keys.get(admin.actor.principal, key.id) == first
    assert [e.action for e in await admin.audit(AuditFilter(target=key.id))] == ["key.create", "key.revoke"]


async def test_a_deleted_key_is_gone_for_good(ks: Keystile, admin: Admin, api_id: str) -> None:
    key, plain = await ks.keys.create(admin.actor, api_id, full_spec())

    await ks.keys.delete(admin.actor, key.id)

    with pytest.raises(NotFound):
        await ks.keys.get(admin.actor.principal, key.id)
    with pytest.raises(NotFound):
        await ks.keys.delete(admin.actor, key.id)
    with pytest.raises(NotFound):
        await ks.keys.update(admin.actor, key.id, key_update({"name": "x"}))
    with pytest.raises(NotFound):
        await ks.keys.revoke(admin.actor, key.id)
    assert (await ks.verification.verify(admin.actor.principal, KeyCheck(plain))).code == "NOT_FOUND"
    assert (await ks.keys.list(admin.actor.principal, api_id, KeyFilter())).items == []


async def test_keys_list_in_pages_with_filters(ks: Keystile, admin: Admin, api_id: str, clock: ManualClock) -> None:
    made = []
    for i in range(5):
        clock.advance(0.01)
        key, _ = await ks.keys.create(admin.actor, api_id, NewKey(name=f"worker {i}", owner_id="alice"))
        made.append(key.id)
    await ks.keys.create(admin.actor, api_id, NewKey(name="other", owner_id="bob"))

    first = await ks.keys.list(admin.actor.principal, api_id, KeyFilter(owner_id="alice"), limit=2)
    second = await ks.keys.list(
        admin.actor.principal, api_id, KeyFilter(owner_id="alice"), cursor=first.next_cursor, limit=2
    )
    third = await ks.keys.list(
        admin.actor.principal, api_id, KeyFilter(owner_id="alice"), cursor=second.next_cursor, limit=2
    )

    assert [k.id for page in (first, second, third) for k in page.items] == list(reversed(made))
    assert third.next_cursor is None
    with pytest.raises(InvalidInput):
        await ks.keys.list(admin.actor.principal, api_id, KeyFilter(), limit=1001)


async def test_stale_keys_are_those_older_than_the_apis_rotation_policy(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    api = await admin.api(NewApi(name="rotating", max_key_age_days=30))
    old, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="old"))
    clock.advance(20 * 86_400)
    young, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="young"))
    clock.advance(11 * 86_400)

    stale = await ks.keys.list(admin.actor.principal, api.id, KeyFilter(), stale=True)
    fresh = await ks.keys.list(admin.actor.principal, api.id, KeyFilter(), stale=False)

    assert [k.id for k in stale.items] == [old.id]
    assert [k.id for k in fresh.items] == [young.id]


# -- text every backend can store ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (NewKey(name="nul\x00name"), "/name"),
        (NewKey(owner_id="user\x00"), "/owner_id"),
        (NewKey(meta={"note": "a\x00b"}), "/meta/note"),
        (NewKey(meta={"deep": [{"x": "\x00"}]}), "/meta/deep/0/x"),
        (NewKey(meta={"a/b\x00": 1}), "/meta/a~1b\x00"),
    ],
)
async def test_text_with_a_nul_character_is_refused_the_same_way_on_every_backend(
    ks: Keystile, admin: Admin, api_id: str, spec: NewKey, field: str
) -> None:
    # PostgreSQL cannot store U+0000 in text or JSON, SQLite can: the same request must get the same answer.
    with pytest.raises(InvalidInput) as caught:
        await ks.keys.create(admin.actor, api_id, spec)
    assert caught.value.code == "invalid_character"
    assert caught.value.extra["field"] == field

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.create_many(admin.actor, api_id, [NewKey(), spec])
    assert caught.value.extra["index"] == 1
    assert caught.value.extra["field"] == "/keys/1" + field

    key, _ = await ks.keys.create(admin.actor, api_id, NewKey())
    patch = to_builtins(spec)
    patch = {name: value for name, value in patch.items() if value not in (None, [], {}, True)}
    with pytest.raises(InvalidInput) as caught:
        await ks.keys.update(admin.actor, key.id, key_update(patch))
    assert caught.value.code == "invalid_character"
    assert await ks.storage.count_keys(api_id) == 1


async def test_listing_with_a_nul_character_in_a_filter_is_invalid_input(
    ks: Keystile, admin: Admin, api_id: str
) -> None:
    for where in (KeyFilter(owner_id="a\x00"), KeyFilter(search="\x00")):
        with pytest.raises(InvalidInput) as caught:
            await ks.keys.list(admin.actor.principal, api_id, where)
        assert caught.value.code == "invalid_character"
    with pytest.raises(InvalidInput):
        await ks.audit.list(admin.actor.principal, AuditFilter(target="key_\x00"), cursor=None, limit=None)


async def test_a_key_is_found_by_its_plain_text_only_by_root_keys_that_may_see_it(
    ks: Keystile, admin: Admin, api_id: str
) -> None:
    key, plain = await ks.keys.create(admin.actor, api_id, NewKey(name="mine"))
    assert await ks.keys.holding(admin.actor.principal, plain) == key
    other = await admin.api(NewApi(name="other"))
    scoped = await admin.actor_with(f"api.{other.id}.keys.read")
    wrong = plain[:-1] + ("y" if plain.endswith("x") else "x")  # "x" alone was the key itself 1 time in 62
    for principal, guess in [(admin.actor.principal, wrong), (scoped.principal, plain)]:
        with pytest.raises(NotFound) as refused:
            await ks.keys.holding(principal, guess)
        assert plain not in str(refused.value)
    root = await ks.root_keys.create(admin.actor, NewRootKey(permissions=["keys.read"]))
    with pytest.raises(NotFound):
        await ks.keys.holding(admin.actor.principal, root[1])  # root keys are not keys of an API

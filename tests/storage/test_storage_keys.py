"""Contract: key records (SPEC K3, K4, R1): round trips, listing, updates, uniqueness, atomicity."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from keystile.core import keys as keyformat
from keystile.core.models import AuditFilter, Credits, Key, KeyFilter, RateLimit, Refill
from keystile.errors import Conflict, InvalidInput
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.storage.conftest import Records

META = {
    "plan": "pro",
    "city": "Zürich",
    "greeting": "こんにちは 👋",
    "nested": {"quote": 'say "hi"\\', "list": [1, 2.5, True, None, "ü"]},
    "big": 2**53,
}


def full_key(records: Records, api_id: str) -> Key:
    """A key with every field set to something other than its default."""
    at = records.tick()
    return records.key(
        api_id,
        at=at,
        name="Ünïcode name ✓",
        owner_id="user_42",
        meta=META,
        permissions=("docs.read", "docs.write", "billing.*"),
        roles=("reader", "admin"),
        expires_at=at + 86_400_000,
        enabled=False,
        revoked_at=at + 1,
        last_used_at=at + 2,
        credits=Credits("cr_full", 1000, Refill(500, "monthly", 15), refilled_at=at - 5),
        # Deliberately not in name order: limits come back in the order they were given.
        ratelimits=(RateLimit("zeta", 10, 1000), RateLimit("alpha", 100, 60_000, auto_apply=False)),
        ip_allowlist=("10.0.0.0/8", "2001:db8::/32"),
        rotated_from="key_previous",
        rotated_to="key_next",
    )


async def test_a_key_reads_back_exactly_as_inserted(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    key = full_key(records, api.id)
    plain_defaults = records.key(api.id)

    async with storage.transaction() as tx:
        await tx.insert_keys([key, plain_defaults])
        assert await tx.get_key(key.id) == key, "a transaction sees its own writes"

    assert await storage.get_key(key.id) == key
    assert await storage.get_key(plain_defaults.id) == plain_defaults
    assert await storage.get_key("key_unknown") is None
    assert await storage.count_keys(api.id) == 2


async def test_a_daily_refill_and_many_rate_limits_keep_their_order(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    limits = tuple(RateLimit(f"limit{i}", i + 1, 1000 * (i + 1)) for i in (5, 3, 11, 0, 7, 1, 10, 2))
    key = await records.insert_key(api.id, credits=Credits("cr_daily", 0, Refill(10, "daily")), ratelimits=limits)

    assert await storage.get_key(key.id) == key


async def test_updating_a_key_replaces_every_mutable_field(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    key = await records.insert_key(api.id, ratelimits=(RateLimit("a", 1, 1000), RateLimit("b", 2, 1000)))
    at = records.tick()
    changed = dataclasses.replace(
        full_key(records, api.id),
        id=key.id,
        digest=key.digest,
        start=key.start,
        created_at=key.created_at,
        updated_at=at,
        ratelimits=(RateLimit("b", 20, 2000), RateLimit("c", 3, 3000)),
    )

    async with storage.transaction() as tx:
        await tx.update_key(changed)

    assert await storage.get_key(key.id) == changed
    assert sorted(row["name"] for row in await records.rows("ratelimits")) == ["b", "c"]


async def test_updating_credits_keeps_the_balance_and_removing_them_drops_the_row(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    key = await records.insert_key(api.id, credits=Credits("cr_one", 10))

    topped_up = dataclasses.replace(key, credits=Credits("cr_one", 99, Refill(99, "daily")), updated_at=records.tick())
    async with storage.transaction() as tx:
        await tx.update_key(topped_up)
    assert await storage.get_key(key.id) == topped_up
    assert [(row["id"], row["remaining"]) for row in await records.rows("credits")] == [("cr_one", 99)]

    unlimited = dataclasses.replace(topped_up, credits=None, updated_at=records.tick())
    async with storage.transaction() as tx:
        await tx.update_key(unlimited)
    assert await storage.get_key(key.id) == unlimited
    assert await records.rows("credits") == [], "a balance no key points to is dropped"

    limited_again = dataclasses.replace(unlimited, credits=Credits("cr_two", 3), updated_at=records.tick())
    async with storage.transaction() as tx:
        await tx.update_key(limited_again)
    assert await storage.get_key(key.id) == limited_again
    assert [row["id"] for row in await records.rows("credits")] == ["cr_two"]


async def test_deleting_a_key_drops_its_credits_and_rate_limits(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    doomed = await records.insert_key(api.id, credits=Credits("cr_doomed", 1), ratelimits=(RateLimit("a", 1, 1),))
    kept = await records.insert_key(api.id, credits=Credits("cr_kept", 1), ratelimits=(RateLimit("a", 1, 1),))

    async with storage.transaction() as tx:
        assert await tx.delete_key(doomed.id) is True
        assert await tx.delete_key(doomed.id) is False
        assert await tx.delete_key("key_unknown") is False

    assert await storage.get_key(doomed.id) is None
    assert [row["id"] for row in await records.rows("credits")] == ["cr_kept"]
    assert [row["key_id"] for row in await records.rows("ratelimits")] == [kept.id]
    assert await storage.get_key(kept.id) == kept


async def test_a_digest_that_exists_is_a_conflict_naming_the_clashing_key(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    other_api = await records.insert_api()
    existing = await records.insert_key(api.id)
    clash = dataclasses.replace(records.key(other_api.id), digest=existing.digest)

    with pytest.raises(Conflict) as caught:
        await records.insert_keys(
            records.key(other_api.id), records.key(other_api.id), clash, records.key(other_api.id)
        )

    assert caught.value.extra["index"] == 2
    assert await storage.count_keys(other_api.id) == 0, "a batch with a clash writes nothing"


async def test_the_same_digest_twice_in_one_batch_is_a_conflict_naming_the_second(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    first = records.key(api.id)
    again = dataclasses.replace(records.key(api.id), digest=first.digest)

    with pytest.raises(Conflict) as caught:
        await records.insert_keys(records.key(api.id), first, records.key(api.id), again)

    assert caught.value.extra["index"] == 3
    assert await storage.count_keys(api.id) == 0


async def test_a_failing_transaction_leaves_nothing_behind(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    key = records.key(api.id, credits=Credits("cr_rolled_back", 5), ratelimits=(RateLimit("a", 1, 1),))

    async def write_then_fail() -> None:
        async with storage.transaction() as tx:
            await tx.insert_keys([key])
            await tx.append_audit(records.audit(target=key.id))
            await tx.insert_api(records.api())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await write_then_fail()

    assert await storage.get_key(key.id) is None
    assert await storage.list_audit(AuditFilter(), before=None, limit=10) == []
    assert await records.rows("credits") == []
    assert await records.rows("ratelimits") == []
    assert [a.id for a in await storage.list_apis(after=None, limit=10, only=None)] == [api.id]

    # The storage is still usable, and the same key can be written now.
    await records.insert_keys(key)
    assert await storage.get_key(key.id) == key


async def test_a_conflict_rolls_back_the_writes_before_it(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    existing = await records.insert_key(api.id)
    fresh = records.key(api.id)

    async def write_then_clash() -> None:
        async with storage.transaction() as tx:
            await tx.insert_keys([fresh])
            await tx.append_audit(records.audit(target=fresh.id))
            await tx.insert_keys([dataclasses.replace(records.key(api.id), digest=existing.digest)])

    with pytest.raises(Conflict):
        await write_then_clash()

    assert await storage.get_key(fresh.id) is None
    assert await storage.list_audit(AuditFilter(), before=None, limit=10) == []


async def test_verification_loads_the_key_its_api_and_its_role_permissions_at_once(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api(ip_allowlist=("192.168.0.0/16",))
    async with storage.transaction() as tx:
        await tx.put_role(records.role(api.id, "reader", "docs.read", "blog.*"))
        await tx.put_role(records.role(api.id, "unused", "nothing"))
    key = await records.insert_key(api.id, roles=("reader",), credits=Credits("cr_v", 7))
    bare_api = await records.insert_api()
    bare = await records.insert_key(bare_api.id)

    bundle = await storage.load_for_verify(key.digest)
    assert bundle is not None
    assert bundle.key == key
    assert bundle.api == api
    assert bundle.role_permissions == {"reader": ("docs.read", "blog.*"), "unused": ("nothing",)}

    bare_bundle = await storage.load_for_verify(bare.digest)
    assert bare_bundle is not None
    assert (bare_bundle.key, bare_bundle.api, bare_bundle.role_permissions) == (bare, bare_api, {})

    assert await storage.load_for_verify(keyformat.digest("ks_not_a_key_we_know")) is None


# -- listing --------------------------------------------------------------------------------------------------


async def _ids(storage: SqlStorage, api_id: str, where: KeyFilter, *, at_ms: int = 0) -> list[str]:
    return [key.id for key in await storage.list_keys(api_id, where, at_ms=at_ms, after=None, limit=1000)]


async def test_keys_are_listed_newest_first_in_pages_without_duplicates_or_gaps(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    other = await records.insert_api()
    same_ms = records.tick()
    # Several keys made in one millisecond: their order is still total, and paging must not lose any.
    keys = [records.key(api.id, at=same_ms) for _ in range(6)] + [records.key(api.id) for _ in range(11)]
    await records.insert_keys(*keys)
    await records.insert_keys(records.key(other.id))

    seen: list[str] = []
    after = None
    for _ in range(100):
        page = await storage.list_keys(api.id, KeyFilter(), at_ms=0, after=after, limit=4)
        assert len(page) <= 4
        if not page:
            break
        seen.extend(key.id for key in page)
        after = page[-1].id

    assert len(seen) == len(set(seen)) == len(keys)
    assert set(seen) == {key.id for key in keys}
    assert seen == sorted(seen, reverse=True)
    assert seen[:11] == [key.id for key in reversed(keys[6:])], "newest first"


async def test_keys_are_filtered_by_owner_enabled_and_revoked(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    alice = await records.insert_key(api.id, owner_id="alice")
    alice_off = await records.insert_key(api.id, owner_id="alice", enabled=False)
    bob_revoked = await records.insert_key(api.id, owner_id="bob", revoked_at=records.tick())
    nobody = await records.insert_key(api.id)

    assert await _ids(storage, api.id, KeyFilter(owner_id="alice")) == [alice_off.id, alice.id]
    assert await _ids(storage, api.id, KeyFilter(owner_id="carol")) == []
    assert await _ids(storage, api.id, KeyFilter(enabled=False)) == [alice_off.id]
    assert await _ids(storage, api.id, KeyFilter(enabled=True)) == [nobody.id, bob_revoked.id, alice.id]
    assert await _ids(storage, api.id, KeyFilter(revoked=True)) == [bob_revoked.id]
    assert await _ids(storage, api.id, KeyFilter(revoked=False)) == [nobody.id, alice_off.id, alice.id]
    assert await _ids(storage, api.id, KeyFilter(owner_id="alice", enabled=True)) == [alice.id]


async def test_keys_are_filtered_by_expiry_at_a_given_time(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    now = records.tick() + 1_000
    past = await records.insert_key(api.id, expires_at=now - 1)
    exactly_now = await records.insert_key(api.id, expires_at=now)
    future = await records.insert_key(api.id, expires_at=now + 1)
    never = await records.insert_key(api.id)

    assert await _ids(storage, api.id, KeyFilter(expired=True), at_ms=now) == [exactly_now.id, past.id]
    assert await _ids(storage, api.id, KeyFilter(expired=False), at_ms=now) == [never.id, future.id]
    assert await _ids(storage, api.id, KeyFilter(expired=True), at_ms=now + 1) == [
        future.id,
        exactly_now.id,
        past.id,
    ]


async def test_keys_are_filtered_by_creation_time(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    old = await records.insert_key(api.id)
    cutoff = records.tick()
    at_cutoff = await records.insert_key(api.id, at=cutoff)
    new = await records.insert_key(api.id)

    assert await _ids(storage, api.id, KeyFilter(created_before=cutoff)) == [old.id]
    assert await _ids(storage, api.id, KeyFilter(created_since=cutoff)) == [new.id, at_cutoff.id]
    assert await _ids(storage, api.id, KeyFilter(created_since=old.created_at, created_before=new.created_at)) == [
        at_cutoff.id,
        old.id,
    ]


async def test_search_matches_name_or_start_ignoring_case(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    billing = await records.insert_key(api.id, name="Billing Service")
    backend = await records.insert_key(api.id, name="backend BILLING job")
    unnamed = await records.insert_key(api.id)

    assert await _ids(storage, api.id, KeyFilter(search="billing")) == [backend.id, billing.id]
    assert await _ids(storage, api.id, KeyFilter(search="SERVICE")) == [billing.id]
    assert await _ids(storage, api.id, KeyFilter(search="nothing like it")) == []
    # By start: the visible beginning of the key, in any case.
    assert unnamed.id in await _ids(storage, api.id, KeyFilter(search=unnamed.start.upper()))
    assert unnamed.id in await _ids(storage, api.id, KeyFilter(search=unnamed.start.lower()))


async def test_search_takes_like_metacharacters_literally(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    percent = await records.insert_key(api.id, name="100% uptime")
    underscore = await records.insert_key(api.id, name="snake_case")
    backslash = await records.insert_key(api.id, name="C:\\keys")
    decoy = await records.insert_key(api.id, name="100 x uptime snakeXcase C:keys")

    assert await _ids(storage, api.id, KeyFilter(search="%")) == [percent.id]
    assert await _ids(storage, api.id, KeyFilter(search="0% u")) == [percent.id]
    assert await _ids(storage, api.id, KeyFilter(search="e_c")) == [underscore.id]
    assert await _ids(storage, api.id, KeyFilter(search="\\")) == [backslash.id]
    assert await _ids(storage, api.id, KeyFilter(search=" x ")) == [decoy.id]


async def test_search_combines_with_the_other_filters_and_paging(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    matching = [await records.insert_key(api.id, name=f"worker {i}", owner_id="alice") for i in range(5)]
    await records.insert_key(api.id, name="worker of bob", owner_id="bob")
    await records.insert_key(api.id, name="other", owner_id="alice")

    where = KeyFilter(owner_id="alice", search="WORKER")
    first = await storage.list_keys(api.id, where, at_ms=0, after=None, limit=3)
    second = await storage.list_keys(api.id, where, at_ms=0, after=first[-1].id, limit=3)

    assert [key.id for key in first + second] == [key.id for key in reversed(matching)]


async def test_a_lookup_with_a_nul_character_finds_nothing_or_is_invalid_input(
    storage: SqlStorage, records: Records
) -> None:
    # PostgreSQL cannot hold U+0000 in text at all; SQLite can. Either way it is the request's fault (an id from a
    # URL with %00, say), never a storage failure that would answer 503.
    api = await records.insert_api()
    await records.insert_key(api.id)
    lookups: dict[str, Callable[[], Awaitable[object]]] = {
        "get_api": lambda: storage.get_api("api_\x00"),
        "get_key": lambda: storage.get_key("key_\x00"),
        "list_keys": lambda: storage.list_keys(api.id, KeyFilter(owner_id="\x00"), at_ms=0, after="\x00", limit=5),
        "list_apis": lambda: storage.list_apis(after="api_\x00", limit=5, only=None),
        "list_audit": lambda: storage.list_audit(AuditFilter(target="\x00"), before=None, limit=5),
    }

    async def outcome(lookup: Callable[[], Awaitable[object]]) -> str:
        try:
            found = await lookup()
        except InvalidInput as exc:
            return exc.code
        return "found something" if found else "nothing"

    for what, lookup in lookups.items():
        assert await outcome(lookup) in ("nothing", "invalid_character"), what


async def test_search_ignores_case_beyond_ascii(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    uber = await records.insert_key(api.id, name="ÜBER Service")
    zurich = await records.insert_key(api.id, name="Büro Zürich")
    ecole = await records.insert_key(api.id, name="école")

    assert await _ids(storage, api.id, KeyFilter(search="über")) == [uber.id]
    assert await _ids(storage, api.id, KeyFilter(search="ZÜRICH")) == [zurich.id]
    assert await _ids(storage, api.id, KeyFilter(search="ÉCOLE")) == [ecole.id]
    assert await _ids(storage, api.id, KeyFilter(search="ü")) == [zurich.id, uber.id]


async def test_batches_larger_than_a_query_chunk_keep_every_guarantee(storage: SqlStorage, records: Records) -> None:
    # Duplicate checks and credit clean-up work in chunks of a few hundred ids; a bulk import is bigger.
    api = await records.insert_api()
    existing = await records.insert_key(api.id)
    keys = [records.key(api.id, credits=Credits(f"cr_{i:04d}", i)) for i in range(1200)]
    clashing = [*keys[:1100], dataclasses.replace(keys[1100], digest=existing.digest), *keys[1101:]]

    with pytest.raises(Conflict) as caught:
        await records.insert_keys(*clashing)
    assert caught.value.extra["index"] == 1100
    assert await storage.count_keys(api.id) == 1

    await records.insert_keys(*keys)
    assert await storage.count_keys(api.id) == 1201
    assert len(await records.rows("credits")) == 1200

    async with storage.transaction() as tx:
        digests = await tx.delete_api(api.id)
    assert len(digests) == 1201
    assert await records.rows("credits") == []

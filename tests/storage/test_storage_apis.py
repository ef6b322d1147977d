"""Contract: APIs and roles, and what deleting them takes along (SPEC K1, V3)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from keystile.core.models import ROOT_API_ID, Credits, RateLimit
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.storage.conftest import Records


async def test_an_api_reads_back_as_inserted(storage: SqlStorage, records: Records) -> None:
    api = records.api(
        name="Zürich payments ✓",
        prefix="pay_live",
        default_ratelimits=(RateLimit("burst", 10, 1000), RateLimit("daily", 5000, 86_400_000, auto_apply=False)),
        max_key_age_days=90,
        recoverable=True,
        ip_allowlist=("10.0.0.0/8", "2001:db8::/32"),
    )
    async with storage.transaction() as tx:
        await tx.insert_api(api)
        assert await tx.get_api(api.id) == api, "a transaction sees its own writes"

    assert await storage.get_api(api.id) == api
    assert await storage.get_api("api_unknown") is None


async def test_an_updated_api_reads_back_updated(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api(ip_allowlist=("10.0.0.0/8",))
    changed = dataclasses.replace(
        api,
        name="renamed",
        prefix="new",
        updated_at=records.tick(),
        default_ratelimits=(RateLimit("r", 1, 1),),
        max_key_age_days=30,
        recoverable=True,
        ip_allowlist=(),
    )

    async with storage.transaction() as tx:
        await tx.update_api(changed)

    assert await storage.get_api(api.id) == changed


async def test_apis_are_listed_newest_first_in_pages_without_the_root_api(
    storage: SqlStorage, records: Records
) -> None:
    apis = [await records.insert_api(name=f"api {i}") for i in range(7)]
    newest_first = [api.id for api in reversed(apis)]

    pages: list[list[str]] = []
    after = None
    while True:
        page = await storage.list_apis(after=after, limit=3, only=None)
        if not page:
            break
        pages.append([api.id for api in page])
        after = page[-1].id

    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7]]
    everything = await storage.list_apis(after=None, limit=100, only=None)
    assert ROOT_API_ID not in [api.id for api in everything]
    assert everything == list(reversed(apis))


async def test_listing_apis_with_only_restricts_to_those_ids(storage: SqlStorage, records: Records) -> None:
    a, b, c = [await records.insert_api() for _ in range(3)]

    listed = await storage.list_apis(after=None, limit=10, only=frozenset({a.id, c.id, "api_unknown"}))
    assert [api.id for api in listed] == [c.id, a.id]
    assert await storage.list_apis(after=None, limit=10, only=frozenset()) == []
    assert await storage.list_apis(after=c.id, limit=10, only=frozenset({a.id, b.id, c.id})) == [b, a]
    assert await storage.list_apis(after=None, limit=10, only=frozenset({ROOT_API_ID})) == []


async def test_deleting_an_api_takes_its_keys_limits_credits_and_roles_and_returns_the_digests(
    storage: SqlStorage, records: Records
) -> None:
    doomed = await records.insert_api()
    kept = await records.insert_api()
    async with storage.transaction() as tx:
        await tx.put_role(records.role(doomed.id, "reader", "docs.read"))
        await tx.put_role(records.role(kept.id, "reader", "docs.read"))
    gone = await records.insert_keys(
        records.key(doomed.id, ratelimits=(RateLimit("a", 1, 1000),), credits=Credits("cr_gone1", 5)),
        records.key(doomed.id, roles=("reader",)),
    )
    stays = await records.insert_key(kept.id, ratelimits=(RateLimit("a", 1, 1000),), credits=Credits("cr_stays", 5))

    async with storage.transaction() as tx:
        digests = await tx.delete_api(doomed.id)

    assert sorted(digests) == sorted(key.digest for key in gone)
    assert await storage.get_api(doomed.id) is None
    for key in gone:
        assert await storage.get_key(key.id) is None
    assert await storage.list_roles(doomed.id) == []
    assert await storage.count_keys(doomed.id) == 0
    assert [row["key_id"] for row in await records.rows("ratelimits")] == [stays.id]
    assert [row["id"] for row in await records.rows("credits")] == ["cr_stays"]
    assert await storage.get_key(stays.id) == stays
    assert [role.name for role in await storage.list_roles(kept.id)] == ["reader"]


async def test_deleting_an_unknown_api_returns_no_digests(storage: SqlStorage) -> None:
    async with storage.transaction() as tx:
        assert await tx.delete_api("api_unknown") == []


async def test_a_role_is_created_replaced_and_listed_by_name(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    writer = records.role(api.id, "writer", "docs.write", "docs.read")
    reader = records.role(api.id, "reader", "docs.read")
    async with storage.transaction() as tx:
        await tx.put_role(writer)
        await tx.put_role(reader)
        assert await tx.get_role(api.id, "reader") == reader
        assert await tx.get_role(api.id, "nobody") is None

    replaced = dataclasses.replace(reader, permissions=("docs.*",), updated_at=records.tick())
    async with storage.transaction() as tx:
        await tx.put_role(replaced)

    assert await storage.list_roles(api.id) == [replaced, writer]


async def test_deleting_a_role_takes_it_off_exactly_the_keys_that_list_it(
    storage: SqlStorage, records: Records
) -> None:
    api = await records.insert_api()
    other_api = await records.insert_api()
    async with storage.transaction() as tx:
        for name in ("read", "reader", "xread", "admin"):
            await tx.put_role(records.role(api.id, name, f"{name}.x"))
        await tx.put_role(records.role(other_api.id, "read", "read.x"))
    listing = await records.insert_key(api.id, roles=("admin", "read", "reader"))
    only_it = await records.insert_key(api.id, roles=("read",))
    similar = await records.insert_key(api.id, roles=("reader", "xread"))
    unrelated = await records.insert_key(api.id, roles=("admin",))
    elsewhere = await records.insert_key(other_api.id, roles=("read",))

    async with storage.transaction() as tx:
        digests = await tx.delete_role(api.id, "read")
        assert await tx.get_role(api.id, "read") is None

    assert sorted(digests) == sorted([listing.digest, only_it.digest])
    assert await storage.get_key(listing.id) == dataclasses.replace(listing, roles=("admin", "reader"))
    assert (await _roles(storage, only_it.id)) == ()
    assert (await _roles(storage, similar.id)) == ("reader", "xread")
    assert (await _roles(storage, unrelated.id)) == ("admin",)
    assert (await _roles(storage, elsewhere.id)) == ("read",)
    assert [role.name for role in await storage.list_roles(api.id)] == ["admin", "reader", "xread"]
    assert [role.name for role in await storage.list_roles(other_api.id)] == ["read"]


async def _roles(storage: SqlStorage, key_id: str) -> tuple[str, ...]:
    key = await storage.get_key(key_id)
    assert key is not None
    return key.roles

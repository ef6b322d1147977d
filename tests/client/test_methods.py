"""Every client method against the app in process: it sends what its route takes and decodes what it answers."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from keystile import AsyncClient, NotFound
from keystile.client import ConflictError
from keystile.core.clock import ManualClock
from keystile.schemas import (
    ApiCreate,
    ApiOut,
    ApiPatch,
    BulkKeyCreate,
    CreditsChange,
    CreditsSpec,
    IdentityCreate,
    IdentityPatch,
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyPatch,
    Page,
    RatelimitRequest,
    RateLimitSpec,
    RerollSpec,
    RoleSpec,
    RootKeyCreate,
    Status,
    VerifyCredits,
    VerifyRequest,
    WebhookCreate,
    WebhookCreated,
    WebhookPatch,
)
from keystile.service import Keystile

from .conftest import Connect


@pytest.fixture
async def api(client: AsyncClient) -> ApiOut:
    return await client.create_api(ApiCreate(name="notes"))


async def test_apis_are_created_listed_shown_changed_and_deleted(client: AsyncClient, clock: ManualClock) -> None:
    first = await client.create_api(ApiCreate(name="first"))
    clock.advance(1)
    second = await client.create_api(ApiCreate(name="second", prefix="nt"))

    page = await client.list_apis(limit=1)
    assert isinstance(page, Page)
    assert [api.id for api in page.items] == [second.id]
    assert page.next_cursor is not None
    rest = await client.list_apis(cursor=page.next_cursor)
    assert [api.id for api in rest.items] == [first.id]

    assert await client.get_api(first.id) == first
    changed = await client.update_api(first.id, ApiPatch(name="renamed", max_key_age_days=90))
    assert (changed.name, changed.max_key_age_days, changed.prefix) == ("renamed", 90, first.prefix)
    reset = await client.update_api(first.id, ApiPatch(max_key_age_days=None))
    assert reset.max_key_age_days is None

    await client.delete_api(first.id)
    with pytest.raises(NotFound):
        await client.get_api(first.id)


async def test_keys_are_created_one_by_one_and_in_bulk_then_listed_with_filters(
    client: AsyncClient, api: ApiOut, clock: ManualClock
) -> None:
    plain = await client.create_key(api.id)
    alice = await client.create_key(api.id, KeyCreate(name="alice's", owner_id="alice", permissions=["notes.read"]))
    assert isinstance(alice, KeyCreated)
    assert alice.key.startswith("ks_")
    assert (alice.owner_id, alice.permissions, plain.name) == ("alice", ["notes.read"], None)

    clock.advance(1)
    bulk = await client.create_keys_bulk(api.id, BulkKeyCreate(keys=[KeyCreate(owner_id="bob")] * 3))
    assert len(bulk.items) == 3
    assert len({item.key for item in bulk.items}) == 3

    everything = await client.list_keys(api.id)
    assert len(everything.items) == 5
    assert all(type(item) is KeyOut for item in everything.items)
    assert [k.id for k in (await client.list_keys(api.id, owner_id="alice")).items] == [alice.id]
    assert len((await client.list_keys(api.id, owner_id="bob", limit=2)).items) == 2
    assert [k.id for k in (await client.list_keys(api.id, q="alice")).items] == [alice.id]
    assert (await client.list_keys(api.id, enabled=False, revoked=True, expired=True, stale=True)).items == []


async def test_a_key_is_shown_changed_verified_charged_rerolled_revoked_and_deleted(
    client: AsyncClient, api: ApiOut
) -> None:
    created = await client.create_key(
        api.id, KeyCreate(permissions=["notes.read"], credits=CreditsSpec(remaining=10), meta={"plan": "free"})
    )
    shown = await client.get_key(created.id)
    assert shown == msgspec.convert(msgspec.to_builtins(created), KeyOut)  # the same record, without the key

    changed = await client.update_key(
        created.id, KeyPatch(name="renamed", meta={"tier": 2}, expires_at=datetime(2099, 1, 1, tzinfo=UTC))
    )
    assert (changed.name, changed.meta, changed.expires_at) == (
        "renamed",
        {"plan": "free", "tier": 2},
        "2099-01-01T00:00:00.000Z",
    )

    answer = await client.verify_key(
        VerifyRequest(key=created.key, permissions="notes.read", credits=VerifyCredits(cost=3))
    )
    assert (answer.valid, answer.code, answer.key_id, answer.meta) == (True, "VALID", created.id, changed.meta)
    assert answer.credits is not None
    assert answer.credits.remaining == 7
    refused = await client.verify_key(VerifyRequest(key=created.key, permissions="notes.write"))
    assert (refused.valid, refused.code) == (False, "INSUFFICIENT_PERMISSIONS")
    unknown = await client.verify_key(VerifyRequest(key="ks_nothing"))
    assert (unknown.code, unknown.key_id) == ("NOT_FOUND", None)

    charged = await client.change_credits(created.id, CreditsChange(op="add", amount=5))
    assert charged.credits is not None
    assert charged.credits.remaining == 12

    rerolled = await client.reroll_key(created.id, RerollSpec(grace_period_ms=0))
    assert rerolled.key != created.key
    assert rerolled.rotated_from == created.id
    assert (await client.get_key(created.id)).rotated_to == rerolled.id
    with pytest.raises(ConflictError) as caught:
        await client.reroll_key(created.id)
    assert caught.value.code == "key_rotated"

    revoked = await client.revoke_key(rerolled.id)
    assert revoked.revoked_at is not None
    assert await client.revoke_key(rerolled.id) == revoked  # again: 200, unchanged
    assert (await client.verify_key(VerifyRequest(key=rerolled.key))).code == "REVOKED"

    await client.delete_key(rerolled.id)
    with pytest.raises(NotFound):
        await client.get_key(rerolled.id)


async def test_identities_are_created_shown_changed_and_deleted(client: AsyncClient) -> None:
    limit = RateLimitSpec(name="requests", limit=10, duration_ms=1000)
    created = await client.create_identity(IdentityCreate(owner_id="acme", meta={"plan": "pro"}, ratelimits=[limit]))
    assert created.owner_id == "acme"

    assert await client.get_identity("acme") == created
    changed = await client.update_identity("acme", IdentityPatch(meta={"seats": 3}, ratelimits=None))
    assert (changed.meta, changed.ratelimits) == ({"plan": "pro", "seats": 3}, [])
    with pytest.raises(ConflictError):
        await client.create_identity(IdentityCreate(owner_id="acme"))

    await client.delete_identity("acme")
    with pytest.raises(NotFound):
        await client.get_identity("acme")


async def test_an_owner_id_with_reserved_characters_reaches_its_identity(client: AsyncClient) -> None:
    await client.create_identity(IdentityCreate(owner_id="user@example.com?x=1#y"))
    assert (await client.get_identity("user@example.com?x=1#y")).owner_id == "user@example.com?x=1#y"


async def test_a_standalone_limit_passes_until_it_is_spent(client: AsyncClient) -> None:
    request = RatelimitRequest(namespace="login", identifier="10.0.0.1", limit=2, duration_ms=60_000)

    answers = [await client.ratelimit(request) for _ in range(3)]

    assert [(a.success, a.remaining) for a in answers] == [(True, 1), (True, 0), (False, 0)]
    assert answers[0].limit == 2


async def test_roles_are_put_listed_and_deleted(client: AsyncClient, api: ApiOut) -> None:
    role = await client.put_role(api.id, RoleSpec(name="reader", permissions=["notes.read"]))
    replaced = await client.put_role(api.id, RoleSpec(name="reader", permissions=["notes.read", "notes.list"]))
    assert (role.name, replaced.permissions) == ("reader", ["notes.read", "notes.list"])

    assert [r.name for r in (await client.list_roles(api.id)).items] == ["reader"]

    await client.delete_role(api.id, "reader")
    assert (await client.list_roles(api.id)).items == []


async def test_root_keys_are_created_listed_and_revoked(
    client: AsyncClient, connect: Connect, clock: ManualClock
) -> None:
    clock.advance(1)
    created = await client.create_root_key(RootKeyCreate(permissions=["apis.read"], name="reader"))
    assert created.key.startswith("ks_root_")
    async with connect(created.key) as reader:
        assert (await reader.list_apis()).items == []

    page = await client.list_root_keys(limit=1)
    assert [key.id for key in page.items] == [created.id]

    revoked = await client.revoke_root_key(created.id)
    assert revoked.revoked_at is not None


async def test_audit_entries_logs_and_counts_are_read(client: AsyncClient, api: ApiOut, ks: Keystile) -> None:
    key = await client.create_key(api.id, KeyCreate(owner_id="alice"))
    for _ in range(3):
        await client.verify_key(VerifyRequest(key=key.key, tags=["path=/notes"]))
    await ks.events.flush()

    audit = await client.list_audit(action="key.create", target=key.id)
    assert [(entry.action, entry.target) for entry in audit.items] == [("key.create", key.id)]
    since = datetime(2000, 1, 1, tzinfo=UTC)
    assert (await client.list_audit(since=since, until=datetime(2001, 1, 1, tzinfo=UTC))).items == []

    logs = await client.list_logs(key_id=key.id, outcome="VALID", limit=2)
    assert [(event.key_id, event.owner_id, event.tags) for event in logs.items] == [
        (key.id, "alice", ["path=/notes"])
    ] * 2
    assert logs.next_cursor is not None
    assert len((await client.list_logs(api_id=api.id, cursor=logs.next_cursor, since=since)).items) == 1

    counts = await client.verification_counts(api_id=api.id, granularity="day", group_by="key")
    assert [(count.group, count.count) for count in counts.items] == [(key.id, 3)]
    assert (counts.granularity, counts.group_by) == ("day", "key")


async def test_operations_and_documents_are_read(client: AsyncClient) -> None:
    assert await client.healthz() == Status("ok")
    assert await client.readyz() == Status("ready")
    assert "keystile_" in await client.metrics()
    document = await client.openapi_json()
    assert document["openapi"].startswith("3.1")
    assert "<html" in (await client.docs()).lower()


async def test_webhooks_are_created_listed_changed_rotated_and_deleted(
    client: AsyncClient, api: ApiOut, ks: Keystile
) -> None:
    created = await client.create_webhook(
        WebhookCreate(url="https://93.184.215.14/hook", events=["key.created"], api_ids=[api.id])
    )
    assert isinstance(created, WebhookCreated)
    assert created.secret.startswith("whsec_")
    assert [w.id for w in (await client.list_webhooks()).items] == [created.id]
    assert (await client.get_webhook(created.id)).api_ids == [api.id]
    changed = await client.update_webhook(created.id, WebhookPatch(enabled=False, api_ids=None))
    assert (changed.enabled, changed.api_ids) == (False, None)
    rotated = await client.rotate_webhook_secret(created.id)
    assert rotated.secret != created.secret
    assert rotated.previous_secret_valid_until is not None
    await client.update_webhook(created.id, WebhookPatch(enabled=True))
    await client.create_key(api.id)
    [delivery] = (await client.list_webhook_deliveries(created.id, state="pending")).items
    assert delivery.type == "key.created"
    assert (await client.retry_webhook_delivery(created.id, delivery.id)).state == "pending"
    await client.delete_webhook(created.id)
    with pytest.raises(NotFound):
        await client.get_webhook(created.id)

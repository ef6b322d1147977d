"""APIs and roles through the services (SPEC K1, V3): merge-patch updates, validation, deletion."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from keystile.core.commands import NewApi, NewKey
from keystile.core.models import AuditFilter, KeyFilter, RateLimit
from keystile.core.verify import KeyCheck
from keystile.errors import InvalidInput, NotFound
from keystile.schemas import api_out, api_update, to_builtins
from keystile.service import Keystile
from keystile.service.authz import Actor
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


def doc(api: Any) -> dict[str, Any]:
    out: dict[str, Any] = to_builtins(api_out(api))
    return out


async def test_deleting_an_api_deletes_its_keys_and_roles(ks: Keystile, storage: SqlStorage, admin: Admin) -> None:
    api = await admin.api(NewApi(name="doomed"))
    kept_api = await admin.api(NewApi(name="kept"))
    await ks.apis.put_role(admin.actor, api.id, name="reader", permissions=["docs.read"])
    created = await ks.keys.create_many(
        admin.actor,
        api.id,
        [NewKey(roles=["reader"], ratelimits=[RateLimit(name="r", limit=1, duration_ms=1000)])] * 3,
    )
    kept, kept_plain = await ks.keys.create(admin.actor, kept_api.id, NewKey())

    await ks.apis.delete(admin.actor, api.id)

    principal = admin.actor.principal
    with pytest.raises(NotFound):
        await ks.apis.get(principal, api.id)
    with pytest.raises(NotFound):
        await ks.keys.list(principal, api.id, KeyFilter())
    for key, plain in created:
        with pytest.raises(NotFound):
            await ks.keys.get(principal, key.id)
        assert (await ks.verification.verify(principal, KeyCheck(plain))).code == "NOT_FOUND"
    assert await storage.count_keys(api.id) == 0
    assert await storage.list_roles(api.id) == []
    assert [row["key_id"] for row in await storage.driver.fetchall("SELECT key_id FROM ratelimits")] == []
    assert (await ks.keys.get(principal, kept.id)).id == kept.id
    assert (await ks.verification.verify(principal, KeyCheck(kept_plain))).code == "VALID"
    with pytest.raises(NotFound):
        await ks.apis.delete(admin.actor, api.id)


async def test_an_api_patch_changes_only_what_it_names_and_null_resets(ks: Keystile, admin: Admin) -> None:
    api = await admin.api(
        NewApi(
            name="patched",
            prefix="pay",
            default_ratelimits=[RateLimit(name="burst", limit=5, duration_ms=1000)],
            max_key_age_days=90,
            ip_allowlist=["10.0.0.0/8"],
        )
    )
    before = doc(api)

    renamed = await ks.apis.update(admin.actor, api.id, api_update({"name": "renamed"}))
    assert doc(renamed) == {**before, "name": "renamed", "updated_at": doc(renamed)["updated_at"]}

    reset = await ks.apis.update(
        admin.actor, api.id, api_update({"default_ratelimits": None, "max_key_age_days": None, "ip_allowlist": None})
    )
    assert (reset.default_ratelimits, reset.max_key_age_days, reset.ip_allowlist) == ((), None, ())
    assert (reset.name, reset.prefix) == ("renamed", "pay")
    assert doc(await ks.apis.get(admin.actor.principal, api.id)) == doc(reset)

    unchanged = await ks.apis.update(admin.actor, api.id, api_update({"name": "renamed"}))
    assert doc(unchanged) == doc(reset)
    assert [e.action for e in await admin.audit(AuditFilter(target=api.id))] == [
        "api.create",
        "api.update",
        "api.update",
    ], "a patch that changes nothing is not audited"


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"prefix": "ks_root"}, "invalid_prefix"),
        ({"prefix": "Has Caps"}, "invalid_request"),
        ({"name": None}, "invalid_request"),
        ({"ip_allowlist": ["nonsense"]}, "invalid_cidr"),
        ({"default_ratelimits": [{"name": "a", "limit": 1, "duration_ms": 1}] * 2}, "duplicate_ratelimit"),
        ({"max_key_age_days": 0}, "invalid_request"),
        ({"unknown": 1}, "invalid_request"),
    ],
)
async def test_an_api_patch_that_breaks_a_rule_changes_nothing(
    ks: Keystile, admin: Admin, patch: dict[str, Any], code: str
) -> None:
    api = await admin.api(NewApi(name="strict"))

    with pytest.raises(InvalidInput) as caught:
        await ks.apis.update(admin.actor, api.id, api_update(patch))

    assert caught.value.code == code
    assert doc(await ks.apis.get(admin.actor.principal, api.id)) == doc(api)


async def test_the_root_prefix_is_reserved(ks: Keystile, admin: Admin) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ks.apis.create(admin.actor, NewApi(name="sneaky", prefix="ks_root"))
    assert caught.value.code == "invalid_prefix"


async def test_roles_are_created_replaced_listed_and_deleted(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()

    role, new = await ks.apis.put_role(admin.actor, api.id, name="reader", permissions=["a.read", "a.read"])
    assert (new, role.permissions) == (True, ("a.read",))
    role, new = await ks.apis.put_role(admin.actor, api.id, name="reader", permissions=["a.*"])
    assert (new, role.permissions) == (False, ("a.*",))
    await ks.apis.put_role(admin.actor, api.id, name="admin", permissions=["*"])
    assert [r.name for r in await ks.apis.list_roles(admin.actor.principal, api.id)] == ["admin", "reader"]

    with pytest.raises(InvalidInput):
        await ks.apis.put_role(admin.actor, api.id, name="bad", permissions=["not a slug"])
    with pytest.raises(NotFound):
        await ks.apis.delete_role(admin.actor, api.id, "ghost")

    await ks.apis.delete_role(admin.actor, api.id, "reader")
    assert [r.name for r in await ks.apis.list_roles(admin.actor.principal, api.id)] == ["admin"]


async def test_deleting_a_role_takes_it_off_the_keys_that_list_it(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    for name in ("read", "reader"):
        await ks.apis.put_role(admin.actor, api.id, name=name, permissions=[f"{name}.x"])
    both, _ = await ks.keys.create(admin.actor, api.id, NewKey(roles=["reader", "read"]))
    similar, _ = await ks.keys.create(admin.actor, api.id, NewKey(roles=["reader"]))

    await ks.apis.delete_role(admin.actor, api.id, "read")

    assert (await ks.keys.get(admin.actor.principal, both.id)).roles == ("reader",)
    assert (await ks.keys.get(admin.actor.principal, similar.id)).roles == ("reader",)
    [entry] = await admin.audit(AuditFilter(action="role.delete"))
    assert entry.changes["removed_from_keys"] == 1


async def test_an_api_name_with_a_nul_character_is_refused_on_every_backend(ks: Keystile, admin: Admin) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ks.apis.create(admin.actor, NewApi(name="nul\x00"))
    assert (caught.value.code, caught.value.extra["field"]) == ("invalid_character", "/name")

    api = await admin.api()
    with pytest.raises(InvalidInput) as caught:
        await ks.apis.update(admin.actor, api.id, api_update({"name": "nul\x00"}))
    assert caught.value.code == "invalid_character"
    assert (await ks.apis.get(admin.actor.principal, api.id)).name == api.name


async def test_a_user_agent_with_a_nul_character_does_not_break_the_audit_entry(ks: Keystile, admin: Admin) -> None:
    actor = Actor(admin.actor.principal, "192.0.2.1", "agent\x00smith")

    api = await ks.apis.create(actor, NewApi(name="audited"))

    [entry] = await admin.audit(AuditFilter(target=api.id))
    assert entry.user_agent == "agent\ufffdsmith"

"""Root keys built in Python (not decoded from JSON) get the same rules as over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from keystile.core.commands import NewRootKey
from keystile.errors import InvalidInput, NotFound
from keystile.service import CLI_ACTOR, Keystile
from keystile.service.authz import Actor

if TYPE_CHECKING:
    from tests.service.conftest import Admin


async def test_a_root_key_without_permissions_is_refused_even_when_built_in_python(ks: Keystile) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ks.root_keys.create(CLI_ACTOR, NewRootKey(permissions=[]))
    assert caught.value.extra["field"] == "/permissions"
    assert not await ks.root_keys.any_active()


# SPEC K6: a root key may create, list and revoke only root keys whose permissions are within its own.


async def _ids(ks: Keystile, actor: Actor, *, limit: int | None = None) -> list[str]:
    """The ids of every root key ``actor`` lists, walking the pages."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await ks.root_keys.list(actor.principal, cursor=cursor, limit=limit)
        assert page.items or cursor is None, "a page that says more follow must not be empty"
        ids.extend(key.id for key in page.items)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def _make(ks: Keystile, actor: Actor, *permissions: str) -> str:
    key, _ = await ks.root_keys.create(actor, NewRootKey(permissions=list(permissions)))
    return key.id


async def test_a_root_key_lists_only_root_keys_within_its_own_permissions(ks: Keystile, admin: Admin) -> None:
    lesser = await admin.actor_with("root_keys.write", "keys.read")
    weaker = await _make(ks, admin.actor, "keys.read")
    scoped = await _make(ks, admin.actor, "api.api_demo.keys.read")
    await _make(ks, admin.actor, "keys.write")
    await _make(ks, admin.actor, "keys.*")

    assert sorted(await _ids(ks, lesser)) == sorted([lesser.id, weaker, scoped])
    assert sorted(await _ids(ks, lesser, limit=1)) == sorted([lesser.id, weaker, scoped])
    assert len(await _ids(ks, admin.actor)) == 6  # a * root key sees them all, the first one included


async def test_a_root_key_cannot_revoke_a_stronger_one_and_learns_nothing_of_it(
    ks: Keystile, admin: Admin, root: tuple[Actor, str]
) -> None:
    lesser = await admin.actor_with("root_keys.write", "keys.read")
    stronger = await _make(ks, admin.actor, "keys.read", "keys.write")

    for target in (admin.actor.id, stronger):
        with pytest.raises(NotFound) as caught:
            await ks.root_keys.revoke(lesser, target)
        with pytest.raises(NotFound) as unknown:
            await ks.root_keys.revoke(lesser, "rk_0000000000000000000000")
        assert caught.value.code == unknown.value.code == "root_key_not_found"
        assert caught.value.detail == f"no root key {target}"
    assert await ks.root_keys.authenticate(root[1])
    assert [entry.action for entry in await admin.audit()].count("root_key.revoke") == 0


async def test_a_root_key_revokes_its_own_and_those_within_its_permissions(ks: Keystile, admin: Admin) -> None:
    lesser = await admin.actor_with("root_keys.write", "keys.write", "api.api_demo.*")
    within = [
        await _make(ks, admin.actor, "keys.write"),
        await _make(ks, admin.actor, "api.api_other.keys.write"),  # keys.write covers it for every API
        await _make(ks, admin.actor, "api.api_demo.keys.read", "api.api_demo.analytics.read"),
    ]
    outside = [
        await _make(ks, admin.actor, "api.api_other.keys.read"),
        await _make(ks, admin.actor, "api.api_other.keys.*"),
        await _make(ks, admin.actor, "api.api_other.*"),
    ]

    for target in within:
        assert (await ks.root_keys.revoke(lesser, target)).revoked_at is not None
    for target in outside:
        with pytest.raises(NotFound):
            await ks.root_keys.revoke(lesser, target)
    assert (await ks.root_keys.revoke(lesser, lesser.id)).revoked_at is not None

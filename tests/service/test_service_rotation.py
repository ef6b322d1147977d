"""The rotation policy of an API (SPEC R3): keys older than ``max_key_age_days`` are stale (marker and list filter),
and with ``expire_stale_after_days`` they verify as EXPIRED that many days later. Time moves on a manual clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewKey
from keystile.core.models import KeyFilter
from keystile.core.verify import KeyCheck
from keystile.errors import InvalidInput
from keystile.schemas import api_update
from keystile.service import Keystile

if TYPE_CHECKING:
    from tests.service.conftest import Admin

DAY_S = 86_400


async def code(ks: Keystile, admin: Admin, plain: str) -> str:
    return (await ks.verification.verify(admin.actor.principal, KeyCheck(plain))).code


async def listed(ks: Keystile, admin: Admin, api_id: str, stale: bool | None) -> list[str]:
    page = await ks.keys.list(admin.actor.principal, api_id, KeyFilter(), stale=stale)
    return [key.id for key in page.items]


async def test_keys_older_than_the_maximum_age_are_marked_and_filtered_as_stale(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    api = await admin.api(NewApi(name="rotated", max_key_age_days=30))
    old, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="old"))
    clock.advance(20 * DAY_S)
    young, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="young"))

    clock.advance(10 * DAY_S - 1)
    assert [out.stale for out in await ks.keys.views([old, young])] == [False, False]
    assert await listed(ks, admin, api.id, stale=True) == []

    clock.advance(2)
    assert [out.stale for out in await ks.keys.views([old, young])] == [True, False]
    assert await listed(ks, admin, api.id, stale=True) == [old.id]
    assert await listed(ks, admin, api.id, stale=False) == [young.id]
    assert await listed(ks, admin, api.id, stale=None) == [young.id, old.id]
    assert (await ks.keys.view(old)).stale is True


async def test_without_a_policy_no_key_is_stale(ks: Keystile, admin: Admin, clock: ManualClock) -> None:
    api = await admin.api()
    key, _ = await ks.keys.create(admin.actor, api.id, NewKey())
    clock.advance(3650 * DAY_S)

    assert (await ks.keys.view(key)).stale is False
    assert await listed(ks, admin, api.id, stale=True) == []
    assert await listed(ks, admin, api.id, stale=False) == [key.id]


async def test_stale_keys_expire_automatically_when_the_policy_says_so(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    api = await admin.api(NewApi(name="strict", max_key_age_days=30, expire_stale_after_days=7))
    assert api.expire_stale_after_days == 7
    _, plain = await ks.keys.create(admin.actor, api.id, NewKey())

    clock.advance(37 * DAY_S - 1)
    assert await code(ks, admin, plain) == "VALID"
    clock.advance(1)
    assert await code(ks, admin, plain) == "EXPIRED"


async def test_a_policy_change_applies_to_cached_keys_at_once(ks: Keystile, admin: Admin, clock: ManualClock) -> None:
    api = await admin.api()
    _, plain = await ks.keys.create(admin.actor, api.id, NewKey())
    clock.advance(40 * DAY_S)
    assert await code(ks, admin, plain) == "VALID"
    assert ks.ctx.verifier.verify_cached(plain) is not None, "cached: a stale answer would show"

    updated = await ks.apis.update(
        admin.actor, api.id, api_update({"max_key_age_days": 30, "expire_stale_after_days": 5})
    )
    assert (updated.max_key_age_days, updated.expire_stale_after_days) == (30, 5)
    assert await code(ks, admin, plain) == "EXPIRED"

    await ks.apis.update(admin.actor, api.id, api_update({"expire_stale_after_days": None}))
    assert await code(ks, admin, plain) == "VALID"
    reread = await ks.apis.get(admin.actor.principal, api.id)
    assert (reread.max_key_age_days, reread.expire_stale_after_days) == (30, None)


async def test_expiring_stale_keys_needs_a_maximum_age(ks: Keystile, admin: Admin) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ks.apis.create(admin.actor, NewApi(name="x", expire_stale_after_days=3))
    assert (caught.value.code, caught.value.extra["field"]) == ("invalid_rotation_policy", "/expire_stale_after_days")

    api = await admin.api(NewApi(name="y", max_key_age_days=30, expire_stale_after_days=3))
    with pytest.raises(InvalidInput) as caught:
        await ks.apis.update(admin.actor, api.id, api_update({"max_key_age_days": None}))
    assert caught.value.code == "invalid_rotation_policy"

    cleared = await ks.apis.update(
        admin.actor, api.id, api_update({"max_key_age_days": None, "expire_stale_after_days": None})
    )
    assert (cleared.max_key_age_days, cleared.expire_stale_after_days) == (None, None)

"""Updates merge like a JSON Merge Patch (RFC 7396) of the record as the API shows it: a key's or identity's
``credits`` and ``meta`` merge member by member, and a balance or refill that does not exist yet must be given
whole. The services merge domain values (keystile.service.credits); these tests hold them to the reference, the
patch merged into the record's JSON and decoded as a whole body, for every shape of patch against every shape of
balance, errors included."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from keystile.core.commands import NewApi, NewCredits, NewIdentity, NewKey
from keystile.core.models import Refill
from keystile.errors import InvalidInput
from keystile.schemas import IdentityCreate, KeyCreate, convert, identity_update, key_update, to_builtins
from keystile.service import Keystile
from keystile.service.snapshots import identity_snapshot, key_snapshot
from keystile.service.validate import merge_patch

if TYPE_CHECKING:
    from tests.service.conftest import Admin

BALANCES = {
    "unlimited": None,
    "no refill": NewCredits(5),
    "monthly on day 3": NewCredits(5, Refill(10, "monthly", 3)),
    "daily": NewCredits(5, Refill(10, "daily")),
}
CREDIT_PATCHES: list[Any] = [
    None,
    {},
    {"remaining": 7},
    {"refill": None},
    {"remaining": 7, "refill": None},
    {"refill": {}},
    {"refill": {"amount": 1}},
    {"refill": {"interval": "daily"}},
    {"refill": {"interval": "monthly"}},
    {"refill": {"day": 9}},
    {"refill": {"day": None}},
    {"refill": {"amount": 2, "interval": "monthly"}},
    {"refill": {"amount": 2, "interval": "daily", "day": 4}},
    {"remaining": 1, "refill": {"amount": 2, "interval": "daily"}},
    {"refill": {"interval": "daily", "amount": 3}, "remaining": 4},
    {"refill": {"interval": "monthly", "day": 31}},
]
META = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "gone": True}
META_PATCHES: list[Any] = [
    None,
    {},
    {"b": None},
    {"b": {"c": None, "e": 3}},
    {"a": {"x": None}},
    {"gone": None, "n": 1},
]
Outcome = tuple[str, Any]


def expected(before: dict[str, Any], patch: dict[str, Any], schema: type[Any], extra: dict[str, Any]) -> Outcome:
    """What merging ``patch`` into the snapshot ``before`` and decoding the result as a whole body gives: the
    merged ``credits`` and ``meta``, or the error."""
    try:
        spec = convert({**merge_patch(before, patch), **extra}, schema)
    except InvalidInput as exc:
        return "error", (exc.code, exc.extra, str(exc))
    refill = spec.credits.refill if spec.credits else None
    if refill is not None and refill.interval == "daily" and refill.day is not None:
        return "error", ("invalid_refill", {"field": "/credits/refill/day"}, "a daily refill takes no day")
    return "merged", {"credits": to_builtins(spec.credits), "meta": spec.meta}


def outcome(snapshot: dict[str, Any]) -> Outcome:
    return "merged", {"credits": snapshot["credits"], "meta": snapshot["meta"]}


def error(exc: InvalidInput) -> Outcome:
    return "error", (exc.code, exc.extra, str(exc))


@pytest.mark.parametrize("balance", sorted(BALANCES))
async def test_a_key_update_merges_credits_and_meta_as_a_merge_patch_would(
    ks: Keystile, admin: Admin, balance: str
) -> None:
    api = await admin.api(NewApi(name="merging"))
    patches = [{"credits": p} for p in CREDIT_PATCHES] + [{"meta": p} for p in META_PATCHES]
    for patch in patches:
        key, _ = await ks.keys.create(admin.actor, api.id, NewKey(meta=META, credits=BALANCES[balance]))
        want = expected(key_snapshot(key), patch, KeyCreate, {})
        try:
            got = outcome(key_snapshot(await ks.keys.update(admin.actor, key.id, key_update(patch))))
        except InvalidInput as exc:
            got = error(exc)
        assert got == want, patch


@pytest.mark.parametrize("balance", sorted(BALANCES))
async def test_an_identity_update_merges_credits_and_meta_as_a_merge_patch_would(
    ks: Keystile, admin: Admin, balance: str
) -> None:
    patches = [{"credits": p} for p in CREDIT_PATCHES] + [{"meta": p} for p in META_PATCHES]
    for number, patch in enumerate(patches):
        owner = f"owner-{number}"
        identity = await ks.identities.create(admin.actor, NewIdentity(owner, meta=META, credits=BALANCES[balance]))
        want = expected(identity_snapshot(identity), patch, IdentityCreate, {"owner_id": owner})
        try:
            got = outcome(identity_snapshot(await ks.identities.update(admin.actor, owner, identity_update(patch))))
        except InvalidInput as exc:
            got = error(exc)
        assert got == want, patch


async def test_a_missing_member_is_named_as_a_body_decoder_names_it(ks: Keystile, admin: Admin) -> None:
    api = await admin.api(NewApi(name="merging"))
    key, _ = await ks.keys.create(admin.actor, api.id, NewKey())

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.update(admin.actor, key.id, key_update({"credits": {"refill": {"interval": "daily"}}}))

    assert caught.value.code == "invalid_request"
    assert caught.value.extra == {"field": "/credits/refill/amount"}
    assert str(caught.value) == "Object missing required field `amount` at /credits/refill/amount"

"""Who may do what with a root key (SPEC K6): 403 without the permission anywhere, 404 when it is held only for
other APIs, scoped listings, and no root key handing out more than it holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewKey, NewRootKey
from keystile.core.models import ROOT_API_ID, AuditFilter, KeyFilter
from keystile.core.verify import KeyCheck
from keystile.errors import Forbidden, InvalidInput, KeystileError, NotFound, Unauthenticated
from keystile.schemas import api_update, key_update
from keystile.service import Keystile
from keystile.service.authz import Actor, Principal

if TYPE_CHECKING:
    from tests.service.conftest import Admin


async def test_a_root_key_without_the_permission_for_any_api_is_forbidden(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    key, plain = await ks.keys.create(admin.actor, api.id, NewKey())
    reader = await admin.actor_with("apis.read")
    principal = reader.principal

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create key": lambda: ks.keys.create(reader, api.id, NewKey()),
        "get key": lambda: ks.keys.get(principal, key.id),
        "list keys": lambda: ks.keys.list(principal, api.id, KeyFilter()),
        "update key": lambda: ks.keys.update(reader, key.id, key_update({"name": "x"})),
        "revoke key": lambda: ks.keys.revoke(reader, key.id),
        "delete key": lambda: ks.keys.delete(reader, key.id),
        "create api": lambda: ks.apis.create(reader, NewApi(name="x")),
        "update api": lambda: ks.apis.update(reader, api.id, api_update({"name": "x"})),
        "delete api": lambda: ks.apis.delete(reader, api.id),
        "put role": lambda: ks.apis.put_role(reader, api.id, name="r"),
        "delete role": lambda: ks.apis.delete_role(reader, api.id, "r"),
        "verify": lambda: ks.verification.verify(principal, KeyCheck(plain)),
        "audit": lambda: ks.audit.list(principal, AuditFilter(), cursor=None, limit=None),
        "create root key": lambda: ks.root_keys.create(reader, NewRootKey(permissions=["apis.read"])),
        "list root keys": lambda: ks.root_keys.list(principal, cursor=None, limit=None),
        "revoke root key": lambda: ks.root_keys.revoke(reader, principal.id),
    }
    for what, call in calls.items():
        with pytest.raises(Forbidden) as caught:
            await call()
        assert caught.value.code == "insufficient_permissions", what

    # The permission it does hold works.
    assert (await ks.apis.get(principal, api.id)).id == api.id


async def test_a_root_key_scoped_to_another_api_gets_not_found_as_if_nothing_were_there(
    ks: Keystile, admin: Admin
) -> None:
    api = await admin.api(NewApi(name="theirs"))
    mine = await admin.api(NewApi(name="mine"))
    key, plain = await ks.keys.create(admin.actor, api.id, NewKey(name="theirs"))
    scoped = await admin.actor_with(
        *(f"api.{mine.id}.{p}" for p in ("apis.read", "apis.write", "keys.read", "keys.write"))
    )
    principal = scoped.principal

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get api": lambda: ks.apis.get(principal, api.id),
        "update api": lambda: ks.apis.update(scoped, api.id, api_update({"name": "x"})),
        "delete api": lambda: ks.apis.delete(scoped, api.id),
        "list roles": lambda: ks.apis.list_roles(principal, api.id),
        "put role": lambda: ks.apis.put_role(scoped, api.id, name="r"),
        "create key": lambda: ks.keys.create(scoped, api.id, NewKey()),
        "bulk create": lambda: ks.keys.create_many(scoped, api.id, [NewKey()]),
        "get key": lambda: ks.keys.get(principal, key.id),
        "list keys": lambda: ks.keys.list(principal, api.id, KeyFilter()),
        "update key": lambda: ks.keys.update(scoped, key.id, key_update({"name": "x"})),
        "revoke key": lambda: ks.keys.revoke(scoped, key.id),
        "delete key": lambda: ks.keys.delete(scoped, key.id),
    }
    for what, call in calls.items():
        with pytest.raises(NotFound) as caught:
            await call()
        assert caught.value.code in ("not_found", "key_not_found", "api_not_found"), what

    # The answer for another API's key is the answer for a key that does not exist: existence is not leaked.
    nothing = "key_0000000000000000000000"
    assert await _error(ks.keys.get(principal, key.id), key.id) == await _error(
        ks.keys.get(principal, nothing), nothing
    )
    nothing = "api_0000000000000000000000"
    assert await _error(ks.apis.get(principal, api.id), api.id) == await _error(
        ks.apis.get(principal, nothing), nothing
    )

    # Nothing was changed by the refused calls, and the key still verifies for the root key.
    assert (await ks.keys.get(admin.actor.principal, key.id)).name == "theirs"
    assert (await ks.verification.verify(admin.actor.principal, KeyCheck(plain))).code == "VALID"

    # Within its own API the scoped root key can do everything it was given.
    own, _ = await ks.keys.create(scoped, mine.id, NewKey(name="own"))
    assert (await ks.keys.get(principal, own.id)).name == "own"
    assert [k.id for k in (await ks.keys.list(principal, mine.id, KeyFilter())).items] == [own.id]


async def _error(call: Awaitable[object], asked_for: str) -> tuple[type[KeystileError], str, str]:
    """The error a call raises, with the id it asked for blanked out of the message."""
    try:
        await call
    except KeystileError as exc:
        return type(exc), exc.code, exc.detail.replace(asked_for, "ID")
    raise AssertionError("expected an error")


async def test_verifying_with_a_root_key_scoped_to_another_api_answers_not_found(ks: Keystile, admin: Admin) -> None:
    api = await admin.api(NewApi(name="theirs"))
    mine = await admin.api(NewApi(name="mine"))
    _, theirs = await ks.keys.create(admin.actor, api.id, NewKey())
    _, own = await ks.keys.create(admin.actor, mine.id, NewKey())
    verifier = (await admin.actor_with(f"api.{mine.id}.keys.verify")).principal

    result = await ks.verification.verify(verifier, KeyCheck(theirs))
    assert result.code == "NOT_FOUND"
    assert result.entry is None, "a NOT_FOUND answer reveals nothing about the key"
    assert (await ks.verification.verify(verifier, KeyCheck(own))).code == "VALID"
    # Asked again (now from the cache), the answer is the same.
    assert (await ks.verification.verify(verifier, KeyCheck(theirs))).code == "NOT_FOUND"


async def test_scoped_root_keys_list_only_their_apis(ks: Keystile, admin: Admin, clock: ManualClock) -> None:
    apis = []
    for name in "abc":
        clock.advance(0.01)  # ids order by their millisecond: newest first is defined between milliseconds
        apis.append(await admin.api(NewApi(name=name)))
    a, b, c = apis
    only_a = (await admin.actor_with(f"api.{a.id}.apis.read")).principal
    a_and_c = (await admin.actor_with(f"api.{a.id}.apis.read", f"api.{c.id}.*")).principal
    everywhere = (await admin.actor_with("apis.read")).principal

    async def listed(principal: Principal) -> list[str]:
        page = await ks.apis.list(principal, cursor=None, limit=None)
        return [api.id for api in page.items]

    assert await listed(only_a) == [a.id]
    assert await listed(a_and_c) == [c.id, a.id]
    assert await listed(everywhere) == [c.id, b.id, a.id]
    assert ROOT_API_ID not in await listed(admin.actor.principal)


async def test_root_keys_are_not_reachable_as_keys_or_apis(ks: Keystile, admin: Admin, root: tuple[Actor, str]) -> None:
    principal = admin.actor.principal
    root_key_id = principal.id

    with pytest.raises(NotFound):
        await ks.keys.get(principal, root_key_id)
    with pytest.raises(NotFound):
        await ks.apis.get(principal, ROOT_API_ID)
    with pytest.raises(NotFound):
        await ks.keys.list(principal, ROOT_API_ID, KeyFilter())
    with pytest.raises(NotFound):
        await ks.keys.revoke(admin.actor, root_key_id)
    _, plain = root
    assert (await ks.verification.verify(principal, KeyCheck(plain))).code == "NOT_FOUND"


@pytest.mark.parametrize(
    ("held", "asked"),
    [
        (["root_keys.write", "keys.read"], ["*"]),
        (["root_keys.write", "keys.read"], ["keys.*"]),
        (["root_keys.write", "keys.read"], ["keys.write"]),
        (["root_keys.write", "keys.read"], ["keys.read", "apis.read"]),
        (["root_keys.write", "keys.*"], ["apis.*"]),
        (["root_keys.write", "keys.*"], ["api.{api}.*"]),
        (["root_keys.write", "api.{api}.keys.*"], ["keys.read"]),
        (["root_keys.write", "api.{api}.keys.*"], ["api.{other}.keys.read"]),
        (["root_keys.write", "api.{api}.keys.read"], ["api.{api}.keys.write"]),
        (["root_keys.write", "api.{api}.keys.*"], ["api.{api}.*"]),
    ],
)
async def test_a_root_key_cannot_grant_a_permission_it_does_not_hold(
    ks: Keystile, admin: Admin, held: list[str], asked: list[str]
) -> None:
    api = await admin.api()
    other = await admin.api()
    creator = await admin.actor_with(*(p.format(api=api.id, other=other.id) for p in held))
    before = len(await admin.audit())

    with pytest.raises(Forbidden, match="does not hold"):
        await ks.root_keys.create(
            creator, NewRootKey(permissions=[p.format(api=api.id, other=other.id) for p in asked])
        )

    assert len(await admin.audit()) == before, "a refused creation is not written, nor audited"


@pytest.mark.parametrize(
    ("held", "asked"),
    [
        (["root_keys.write", "keys.read"], ["keys.read"]),
        (["root_keys.write", "keys.read"], ["api.{api}.keys.read"]),
        (["root_keys.write", "keys.*"], ["keys.write", "keys.*", "api.{api}.keys.*"]),
        (["root_keys.write", "api.{api}.keys.*"], ["api.{api}.keys.read", "api.{api}.keys.*"]),
        (["root_keys.write", "api.{api}.*"], ["api.{api}.apis.write", "api.{api}.keys.verify"]),
        (["*"], ["*"]),
        (["root_keys.write"], ["root_keys.write"]),
    ],
)
async def test_a_root_key_can_grant_what_it_holds(
    ks: Keystile, admin: Admin, held: list[str], asked: list[str]
) -> None:
    api = await admin.api()
    creator = await admin.actor_with(*(p.format(api=api.id) for p in held))
    permissions = [p.format(api=api.id) for p in asked]

    created, plain = await ks.root_keys.create(creator, NewRootKey(permissions=permissions))

    assert list(created.permissions) == permissions
    principal = await ks.root_keys.authenticate(plain)
    assert principal.id == created.id
    assert principal.grants is not None
    assert sorted(principal.grants.exact) == sorted(permissions)


@pytest.mark.parametrize(
    "permission",
    [
        "docs.read",
        "keys",
        "keys.read.more",
        "api.{api}.root_keys.write",
        "api.{api}.audit.read",
        "api.nope.keys.read",
        "**",
        "",
    ],
)
async def test_a_root_key_permission_outside_the_vocabulary_is_invalid(
    ks: Keystile, admin: Admin, permission: str
) -> None:
    api = await admin.api()

    with pytest.raises(InvalidInput) as caught:
        await ks.root_keys.create(admin.actor, NewRootKey(permissions=[permission.format(api=api.id)]))
    assert caught.value.code == "invalid_permission"


async def test_a_revoked_root_key_no_longer_authenticates(ks: Keystile, admin: Admin) -> None:
    created, plain = await ks.root_keys.create(admin.actor, NewRootKey(permissions=["keys.read"]))
    assert (await ks.root_keys.authenticate(plain)).id == created.id

    revoked = await ks.root_keys.revoke(admin.actor, created.id)

    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated):
        await ks.root_keys.authenticate(plain)  # the revocation dropped the cached principal


async def test_an_expired_root_key_no_longer_authenticates(ks: Keystile, admin: Admin, clock: ManualClock) -> None:
    from datetime import UTC, datetime

    expires = datetime.fromtimestamp(clock.now() + 60, UTC)
    _, plain = await ks.root_keys.create(admin.actor, NewRootKey(permissions=["keys.read"], expires_at=expires))
    await ks.root_keys.authenticate(plain)

    clock.advance(60)

    with pytest.raises(Unauthenticated):
        await ks.root_keys.authenticate(plain)


async def test_only_root_keys_authenticate_as_root_keys(ks: Keystile, admin: Admin, root: tuple[Actor, str]) -> None:
    api = await admin.api()
    _, plain = await ks.keys.create(admin.actor, api.id, NewKey())
    _, root_plain = root
    typo = root_plain[:-1] + ("A" if root_plain[-1] != "A" else "B")

    for presented in (plain, typo, "", "ks_root_", "Bearer " + root_plain):
        with pytest.raises(Unauthenticated):
            await ks.root_keys.authenticate(presented)

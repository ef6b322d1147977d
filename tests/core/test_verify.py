"""Verification outcomes (SPEC V2), checked by the verifier against real storage on every backend."""

from __future__ import annotations

import pytest

from keystile.core import keys as keyformat
from keystile.core.clock import ManualClock, now_ms
from keystile.core.models import ROOT_API_ID, RateLimit
from keystile.core.ports import Change
from keystile.core.verify import Code, Verifier
from keystile.errors import InvalidInput, QuerySyntaxError
from keystile.storage import SqlStorage

from .world import World


@pytest.fixture
def verifier(storage: SqlStorage, clock: ManualClock) -> Verifier:
    return Verifier(storage, clock)


async def test_a_good_key_is_valid_and_carries_its_record(world: World, verifier: Verifier) -> None:
    api = await world.api()
    key, plain = await world.key(api.id, name="first", owner_id="user_1")

    result = await verifier.verify(plain)

    assert result.code == Code.VALID
    assert result.valid
    assert result.entry is not None
    assert result.entry.key.id == key.id
    assert result.entry.key.owner_id == "user_1"


async def test_the_cached_entry_gives_back_the_whole_key_record(
    world: World, verifier: Verifier, storage: SqlStorage, clock: ManualClock
) -> None:
    # An entry keeps its key compactly (SPEC P7): what it gives back is the record storage holds, field for field.
    api = await world.api()
    meta = {"plan": "pro", "nested": {"list": [1, 2.5, None, True], "text": "é ü \u2603"}, "seats": 10**15}
    _, plain = await world.key(
        api.id,
        name="full",
        owner_id="user_é",
        meta=meta,
        permissions=("docs.read", "docs.write"),
        roles=("editor",),
        expires_at=now_ms(clock) + 86_400_000,
        ip_allowlist=("10.0.0.0/8",),
        ratelimits=(RateLimit("api", 10, 1000, False),),
        rotated_from="key_old",
    )
    bare, bare_plain = await world.key(api.id)

    for plain_text in (plain, bare_plain):
        result = await verifier.verify(plain_text, ip="10.1.2.3")
        assert result.entry is not None
        stored = await storage.load_for_verify(keyformat.digest(plain_text))
        assert stored is not None
        assert result.entry.key == stored.key
    assert result.entry is not None
    assert result.entry.key.meta == {}
    assert bare.id == result.entry.key_id


@pytest.mark.parametrize(
    "text",
    ["", "ks_", "not a key", "x" * (keyformat.MAX_KEY_LENGTH + 1)],
)
async def test_malformed_keys_are_not_found(verifier: Verifier, text: str) -> None:
    result = await verifier.verify(text)
    assert result.code == Code.NOT_FOUND
    assert result.entry is None


async def test_a_key_with_one_wrong_character_is_not_found(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id)
    wrong = plain[:10] + ("a" if plain[10] != "a" else "b") + plain[11:]

    assert (await verifier.verify(wrong)).code == Code.NOT_FOUND


# -- the order of SPEC V2: the first failure wins ---------------------------------------------------------------


async def test_revoked_wins_over_disabled_and_expired(world: World, clock: ManualClock, verifier: Verifier) -> None:
    api = await world.api(ip_allowlist=("10.0.0.0/8",))
    now = now_ms(clock)
    _, plain = await world.key(api.id, revoked_at=now - 1, enabled=False, expires_at=now - 1, permissions=())

    result = await verifier.verify(plain, permissions="admin", ip="192.0.2.1")

    assert result.code == Code.REVOKED
    assert result.entry is not None  # the key is the caller's, so its record may be shown


async def test_disabled_wins_over_expired(world: World, clock: ManualClock, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, enabled=False, expires_at=now_ms(clock) - 1)

    assert (await verifier.verify(plain, ip="192.0.2.1", permissions="admin")).code == Code.DISABLED


async def test_expired_wins_over_forbidden(world: World, clock: ManualClock, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, expires_at=now_ms(clock), ip_allowlist=("10.0.0.0/8",))

    assert (await verifier.verify(plain, ip="192.0.2.1", permissions="admin")).code == Code.EXPIRED


async def test_forbidden_wins_over_insufficient_permissions(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, ip_allowlist=("10.0.0.0/8",))

    assert (await verifier.verify(plain, ip="192.0.2.1", permissions="admin")).code == Code.FORBIDDEN


async def test_insufficient_permissions(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, permissions=("docs.read",))

    assert (await verifier.verify(plain, permissions="docs.write")).code == Code.INSUFFICIENT_PERMISSIONS
    assert (await verifier.verify(plain, permissions="docs.read")).code == Code.VALID


async def test_a_key_expires_at_its_expiry_instant(world: World, clock: ManualClock, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, expires_at=now_ms(clock) + 1000)

    assert (await verifier.verify(plain)).code == Code.VALID
    clock.advance(0.999)
    assert (await verifier.verify(plain)).code == Code.VALID
    clock.advance(0.001)
    assert (await verifier.verify(plain)).code == Code.EXPIRED  # straight from the cache: no TTL to wait for


# -- which API a key answers for ------------------------------------------------------------------------------


async def test_a_key_of_another_api_than_api_id_is_not_found(world: World, verifier: Verifier) -> None:
    mine, other = await world.api(), await world.api()
    _, plain = await world.key(mine.id)

    assert (await verifier.verify(plain, api_id=mine.id)).code == Code.VALID
    result = await verifier.verify(plain, api_id=other.id)
    assert result.code == Code.NOT_FOUND
    assert result.entry is None  # nothing about the key is revealed


async def test_a_revoked_key_of_another_api_is_not_found_rather_than_revoked(world: World, verifier: Verifier) -> None:
    mine, other = await world.api(), await world.api()
    _, plain = await world.key(mine.id, revoked_at=1)

    assert (await verifier.verify(plain, api_id=other.id)).code == Code.NOT_FOUND


async def test_a_scoped_caller_sees_keys_of_its_apis_only(world: World, verifier: Verifier) -> None:
    mine, other = await world.api(), await world.api()
    _, plain = await world.key(other.id, revoked_at=1)

    assert (await verifier.verify(plain, apis=frozenset({mine.id}))).code == Code.NOT_FOUND
    assert (await verifier.verify(plain, apis=frozenset({mine.id, other.id}))).code == Code.REVOKED


async def test_root_keys_answer_only_when_asked_for_by_api_id(world: World, verifier: Verifier) -> None:
    _, plain = await world.key(ROOT_API_ID, prefix=keyformat.ROOT_PREFIX, permissions=("*",))

    assert (await verifier.verify(plain)).code == Code.NOT_FOUND
    assert (await verifier.verify(plain, apis=frozenset({ROOT_API_ID}))).code == Code.NOT_FOUND
    assert (await verifier.verify(plain, api_id=ROOT_API_ID)).code == Code.VALID


# -- IP allowlists --------------------------------------------------------------------------------------------


async def test_the_key_and_the_api_allowlists_both_apply(world: World, verifier: Verifier) -> None:
    api = await world.api(ip_allowlist=("10.1.0.0/16", "2001:db8::/32"))
    _, plain = await world.key(api.id, ip_allowlist=("10.0.0.0/8",))

    assert (await verifier.verify(plain, ip="10.1.2.3")).code == Code.VALID
    assert (await verifier.verify(plain, ip="::ffff:10.1.2.3")).code == Code.VALID
    assert (await verifier.verify(plain, ip="10.2.0.1")).code == Code.FORBIDDEN  # the key's list allows it
    assert (await verifier.verify(plain, ip="2001:db8::1")).code == Code.FORBIDDEN  # the API's list allows it
    assert (await verifier.verify(plain, ip="192.0.2.1")).code == Code.FORBIDDEN


async def test_an_api_allowlist_alone_applies_to_its_keys(world: World, verifier: Verifier) -> None:
    api = await world.api(ip_allowlist=("2001:db8::/32",))
    _, plain = await world.key(api.id)

    assert (await verifier.verify(plain, ip="2001:db8::1")).code == Code.VALID
    assert (await verifier.verify(plain, ip="2001:db9::1")).code == Code.FORBIDDEN


@pytest.mark.parametrize("where", ["key", "api"])
async def test_no_ip_while_an_allowlist_exists_is_forbidden(world: World, verifier: Verifier, where: str) -> None:
    api = await world.api(ip_allowlist=("10.0.0.0/8",) if where == "api" else ())
    _, plain = await world.key(api.id, ip_allowlist=("10.0.0.0/8",) if where == "key" else ())

    assert (await verifier.verify(plain)).code == Code.FORBIDDEN


async def test_without_allowlists_any_ip_or_none_is_fine(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id)

    assert (await verifier.verify(plain)).code == Code.VALID
    assert (await verifier.verify(plain, ip="192.0.2.1")).code == Code.VALID


@pytest.mark.parametrize("ip", ["", "localhost", "10.0.0.256", "10.0.0.0/8", "::g"])
async def test_an_invalid_ip_is_invalid_input_for_any_key(world: World, verifier: Verifier, ip: str) -> None:
    api = await world.api()
    _, plain = await world.key(api.id)

    for key in (plain, keyformat.generate("ks"), "garbage"):  # known, unknown, malformed
        with pytest.raises(InvalidInput) as caught:
            await verifier.verify(key, ip=ip)
        assert caught.value.code == "invalid_ip"


async def test_an_invalid_permission_query_is_a_syntax_error(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id)

    with pytest.raises(QuerySyntaxError) as caught:
        await verifier.verify(plain, permissions="docs.read AND")
    assert caught.value.position == len("docs.read AND")


# -- permissions and roles ------------------------------------------------------------------------------------


async def test_roles_are_expanded_into_the_keys_grants(world: World, verifier: Verifier) -> None:
    api = await world.api()
    await world.role(api, "editor", "docs.write", "images.*")
    _, plain = await world.key(api.id, permissions=("docs.read",), roles=("editor", "ghost"))

    result = await verifier.verify(plain, permissions="docs.read AND docs.write AND images.upload")

    assert result.code == Code.VALID
    assert result.entry is not None
    assert result.entry.role_names == ("editor",)  # a role the API does not define grants nothing
    assert (await verifier.verify(plain, permissions="admin")).code == Code.INSUFFICIENT_PERMISSIONS


async def test_roles_of_another_api_grant_nothing(world: World, verifier: Verifier) -> None:
    api, other = await world.api(), await world.api()
    await world.role(other, "editor", "docs.write")
    _, plain = await world.key(api.id, roles=("editor",))

    assert (await verifier.verify(plain, permissions="docs.write")).code == Code.INSUFFICIENT_PERMISSIONS


async def test_permission_answers_are_memoised_per_query(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, permissions=("docs.read",))

    first = await verifier.verify(plain, permissions="docs.read OR admin")
    second = await verifier.verify(plain, permissions="docs.read OR admin")
    denied = await verifier.verify(plain, permissions="admin")

    assert first.code == second.code == Code.VALID
    assert denied.code == Code.INSUFFICIENT_PERMISSIONS
    assert first.entry is second.entry is denied.entry
    assert first.entry is not None
    # Memoised per grant set (shared by the keys granted the same permissions: an answer depends on nothing else).
    assert first.entry.memo["docs.read OR admin"] is True
    assert first.entry.memo["admin"] is False


async def test_the_memo_is_bounded(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, permissions=("p.*",))

    for i in range(500):
        assert (await verifier.verify(plain, permissions=f"p.{i}")).code == Code.VALID

    result = await verifier.verify(plain, permissions="q")
    assert result.code == Code.INSUFFICIENT_PERMISSIONS
    assert result.entry is not None
    assert 0 < len(result.entry.memo) <= 64


async def test_a_changed_grant_is_seen_once_the_change_arrives(world: World, verifier: Verifier) -> None:
    api = await world.api()
    key, plain = await world.key(api.id, permissions=("docs.read",))
    assert (await verifier.verify(plain, permissions="docs.read")).code == Code.VALID

    await world.update(key, permissions=("docs.write",))
    verifier.apply_changes([Change("key", key.digest.hex())])

    assert (await verifier.verify(plain, permissions="docs.read")).code == Code.INSUFFICIENT_PERMISSIONS
    assert (await verifier.verify(plain, permissions="docs.write")).code == Code.VALID


async def test_an_api_change_drops_the_cached_keys_of_that_api(world: World, verifier: Verifier) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, roles=("editor",))
    assert (await verifier.verify(plain, permissions="docs.write")).code == Code.INSUFFICIENT_PERMISSIONS

    await world.role(api, "editor", "docs.write")
    verifier.apply_changes([Change("api", api.id)])

    assert (await verifier.verify(plain, permissions="docs.write")).code == Code.VALID

"""The verification cache (SPEC V6; issue 2, "Done when" 6): a cached key costs no storage call.

Every test counts the calls that reach real storage (memory, SQLite, PostgreSQL) through
:class:`~tests.core.world.CountingStorage`, and moves a manual clock instead of waiting.
"""

from __future__ import annotations

import gc
import sys

import pytest

from keystile.config import Settings
from keystile.core import keys as keyformat
from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewKey
from keystile.core.ports import Change
from keystile.core.verify import Code, KeyCheck, Verifier
from keystile.errors import StorageError
from keystile.service import Actor, Keystile
from keystile.storage import SqlStorage

from .world import CountingStorage, World

TTL = 5.0
NEGATIVE_TTL = 1.0


@pytest.fixture
def verifier(counting: CountingStorage, clock: ManualClock) -> Verifier:
    return Verifier(counting, clock, ttl_s=TTL, negative_ttl_s=NEGATIVE_TTL)


def bad_checksum(key: str) -> str:
    return key[:-1] + ("0" if key[-1] != "0" else "1")


async def test_a_cached_key_verifies_without_any_storage_call(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api(ip_allowlist=("10.0.0.0/8", "2001:db8::/32"))
    _, plain = await world.key(api.id, permissions=("docs.read", "docs.write", "admin"))
    query = "docs.read AND (docs.write OR admin)"

    first = await verifier.verify(plain, api_id=api.id, permissions=query, ip="10.1.2.3")
    assert first.code == Code.VALID
    assert counting.calls == ["load_for_verify"]

    counting.calls.clear()
    for i in range(100):
        result = await verifier.verify(plain, api_id=api.id, permissions=query, ip=f"10.0.0.{i}")
        assert result.code == Code.VALID
        assert verifier.verify_cached(plain, api_id=api.id, permissions="admin", ip="2001:db8::1") is not None
    assert (await verifier.verify(plain, permissions="nope", ip="10.0.0.1")).code == Code.INSUFFICIENT_PERMISSIONS
    assert (await verifier.verify(plain, permissions=query, ip="192.0.2.1")).code == Code.FORBIDDEN

    assert counting.calls == []
    assert verifier.stats["misses"] == 1


async def test_after_the_ttl_the_next_verification_makes_exactly_one_call(
    world: World, clock: ManualClock, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    _, plain = await world.key(api.id)
    await verifier.verify(plain)
    counting.calls.clear()

    clock.advance(TTL - 0.001)
    assert (await verifier.verify(plain)).code == Code.VALID
    assert counting.calls == []

    clock.advance(0.001)
    assert verifier.verify_cached(plain) is None  # storage must be asked now
    assert (await verifier.verify(plain)).code == Code.VALID
    assert (await verifier.verify(plain)).code == Code.VALID
    assert counting.calls == ["load_for_verify"]


async def test_a_change_made_in_storage_is_seen_after_the_ttl_even_without_a_notification(
    world: World, clock: ManualClock, verifier: Verifier
) -> None:
    api = await world.api()
    key, plain = await world.key(api.id)
    await verifier.verify(plain)

    await world.update(key, revoked_at=1)
    assert (await verifier.verify(plain)).code == Code.VALID  # cached, and nobody said otherwise

    clock.advance(TTL)
    assert (await verifier.verify(plain)).code == Code.REVOKED


@pytest.mark.parametrize(
    "text",
    ["", "x" * (keyformat.MAX_KEY_LENGTH + 1), "ks_" + "A" * (keyformat.MAX_KEY_LENGTH - 2)],
    ids=["empty", "too-long", "too-long-key-shaped"],
)
async def test_a_malformed_key_makes_no_storage_call(counting: CountingStorage, verifier: Verifier, text: str) -> None:
    for _ in range(3):
        assert (await verifier.verify(text, permissions="a", ip="10.0.0.1")).code == Code.NOT_FOUND
    assert counting.calls == []


async def test_a_key_with_a_bad_checksum_makes_no_storage_call(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    _, plain = await world.key(api.id)
    counting.calls.clear()

    for text in (bad_checksum(plain), bad_checksum(keyformat.generate("ks")), bad_checksum(keyformat.generate("a_b"))):
        assert (await verifier.verify(text)).code == Code.NOT_FOUND
    # No key is looked up; the one question asked (once a TTL) is which prefixes hold keys imported by digest.
    assert counting.calls == ["digest_import_prefixes"]


async def test_random_strings_in_key_shape_never_reach_storage(counting: CountingStorage, verifier: Verifier) -> None:
    # What a guesser sends: 10,000 made-up keys; a CRC32 lets about one in 4 billion through.
    for i in range(10_000):
        text = f"ks_{i:032d}000000"
        assert (await verifier.verify(text)).code == Code.NOT_FOUND
    assert counting.calls == ["digest_import_prefixes"]


async def test_a_bad_checksum_is_looked_up_under_a_prefix_with_keys_imported_by_digest(
    world: World, counting: CountingStorage, verifier: Verifier, storage: SqlStorage
) -> None:
    # SPEC K2: keys imported by digest may be in Keystile's shape without its checksum (another system's keys).
    api = await world.api(prefix="ks")
    foreign = bad_checksum(keyformat.generate("ks"))
    other = bad_checksum(keyformat.generate("zz"))
    await world.imported(api.id, foreign)
    assert (await verifier.verify(foreign)).code == Code.NOT_FOUND, "not marked yet: refused on its checksum"

    async with storage.transaction() as tx:
        assert await tx.mark_imported_by_digest(api.id)
        assert not await tx.mark_imported_by_digest(api.id), "marked once"
    verifier.apply_changes([Change("api", api.id)])
    counting.calls.clear()

    assert (await verifier.verify(foreign)).code == Code.VALID
    assert (await verifier.verify(other)).code == Code.NOT_FOUND
    assert counting.calls == ["digest_import_prefixes", "load_for_verify"], "another prefix: no key lookup"


async def test_an_unknown_key_is_remembered_for_the_negative_ttl(
    clock: ManualClock, counting: CountingStorage, verifier: Verifier
) -> None:
    unknown = keyformat.generate("ks")

    assert (await verifier.verify(unknown)).code == Code.NOT_FOUND
    assert counting.calls == ["load_for_verify"]

    counting.calls.clear()
    clock.advance(NEGATIVE_TTL - 0.001)
    for _ in range(10):
        assert (await verifier.verify(unknown)).code == Code.NOT_FOUND
    assert counting.calls == []
    assert verifier.stats["negative_hits"] == 10

    clock.advance(0.001)
    assert (await verifier.verify(unknown)).code == Code.NOT_FOUND
    assert counting.calls == ["load_for_verify"]


async def test_an_unknown_key_of_another_shape_is_looked_up_once_then_remembered(
    counting: CountingStorage, verifier: Verifier
) -> None:
    # Imported keys keep their own format (SPEC K2, R4), so a string of another shape must be looked up.
    for _ in range(5):
        assert (await verifier.verify("sk_live_51HxYzImportedKey")).code == Code.NOT_FOUND
    assert counting.calls == ["load_for_verify"]


async def test_an_imported_key_of_another_shape_verifies_from_the_cache(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    _, plain = await world.imported(api.id, "sk_live_51HxYzImportedKey")

    for _ in range(5):
        assert (await verifier.verify(plain)).code == Code.VALID
    assert counting.calls == ["load_for_verify"]


async def test_a_change_for_the_key_sends_the_next_verification_to_storage(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    key, plain = await world.key(api.id)
    _, other = await world.key(api.id)
    await verifier.verify(plain)
    await verifier.verify(other)
    counting.calls.clear()

    await world.update(key, enabled=False)
    verifier.apply_changes([Change("key", key.digest.hex())])

    assert (await verifier.verify(plain)).code == Code.DISABLED
    assert (await verifier.verify(other)).code == Code.VALID  # untouched: still cached
    assert counting.calls == ["load_for_verify"]


async def test_a_change_for_a_key_ends_its_negative_entry(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    plain = keyformat.generate("ks")
    assert (await verifier.verify(plain)).code == Code.NOT_FOUND

    key, _ = await world.imported(api.id, plain)
    verifier.apply_changes([Change("key", key.digest.hex())])

    assert (await verifier.verify(plain)).code == Code.VALID
    assert counting.calls == ["load_for_verify", "load_for_verify"]


async def test_an_api_change_drops_that_apis_keys_only(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api, other_api = await world.api(), await world.api()
    _, plain = await world.key(api.id)
    _, other = await world.key(other_api.id)
    await verifier.verify(plain)
    await verifier.verify(other)
    counting.calls.clear()

    verifier.apply_changes([Change("api", api.id)])

    await verifier.verify(plain)
    await verifier.verify(other)
    assert counting.calls == ["load_for_verify"]


async def test_a_change_during_a_storage_read_is_not_lost(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    key, plain = await world.key(api.id)

    async def revoke_meanwhile() -> None:
        # The read has its answer; the key is revoked and the change published before the answer arrives.
        counting.after_load = None
        await world.update(key, revoked_at=1)
        verifier.apply_changes([Change("key", key.digest.hex())])

    counting.after_load = revoke_meanwhile
    assert (await verifier.verify(plain)).code == Code.VALID  # what storage said when it was asked

    # The answer predates the change, so it must not be cached for a whole TTL.
    assert (await verifier.verify(plain)).code == Code.REVOKED


async def test_a_key_created_during_a_storage_read_is_not_remembered_as_unknown(
    world: World, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    plain = keyformat.generate("ks")

    async def create_meanwhile() -> None:
        counting.after_load = None
        key, _ = await world.imported(api.id, plain)
        verifier.apply_changes([Change("key", key.digest.hex())])

    counting.after_load = create_meanwhile
    assert (await verifier.verify(plain)).code == Code.NOT_FOUND  # storage answered before the key existed

    assert (await verifier.verify(plain)).code == Code.VALID  # not hidden for the negative TTL


async def test_a_stale_entry_is_served_while_storage_is_down(
    world: World, storage: SqlStorage, clock: ManualClock, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    _, plain = await world.key(api.id, permissions=("docs.read",))
    assert (await verifier.verify(plain)).code == Code.VALID
    await storage.close()  # the database goes away
    clock.advance(TTL * 10)

    result = await verifier.verify(plain, permissions="docs.read")

    assert result.code == Code.VALID
    assert verifier.stats["stale_served"] == 1
    assert (await verifier.verify(plain, permissions="admin")).code == Code.INSUFFICIENT_PERMISSIONS
    assert verifier.stats["stale_served"] == 2
    with pytest.raises(StorageError):
        await verifier.verify(keyformat.generate("ks"))  # nothing cached to fall back on
    assert verifier.stats["stale_served"] == 2


async def test_a_key_dropped_by_a_change_is_not_served_stale(
    world: World, storage: SqlStorage, clock: ManualClock, verifier: Verifier
) -> None:
    api = await world.api()
    key, plain = await world.key(api.id)
    await verifier.verify(plain)
    await world.update(key, revoked_at=1)
    verifier.apply_changes([Change("key", key.digest.hex())])
    await storage.close()

    with pytest.raises(StorageError):
        await verifier.verify(plain)
    assert verifier.stats["stale_served"] == 0


async def test_a_change_that_arrives_during_a_failing_read_is_not_served_stale(
    world: World, storage: SqlStorage, clock: ManualClock, counting: CountingStorage, verifier: Verifier
) -> None:
    api = await world.api()
    key, plain = await world.key(api.id)
    await verifier.verify(plain)
    await storage.close()
    clock.advance(TTL)

    async def change_meanwhile() -> None:
        verifier.apply_changes([Change("key", key.digest.hex())])  # say, a revocation made on another instance

    counting.after_load = change_meanwhile
    with pytest.raises(StorageError):
        await verifier.verify(plain)
    assert verifier.stats["stale_served"] == 0


@pytest.mark.parametrize("signal", ["lost", "all"])
async def test_a_lost_channel_keeps_cached_keys_verifying_while_storage_is_down(
    world: World, storage: SqlStorage, counting: CountingStorage, verifier: Verifier, signal: str
) -> None:
    # Issue 8, finding 1: a database outage drops the LISTEN connection, the bus says so, and the cache used to
    # empty itself, leaving nothing to serve (SPEC V6: losing the channel never empties the cache).
    api = await world.api()
    _, plain = await world.key(api.id, permissions=("docs.read",))
    assert (await verifier.verify(plain)).code == Code.VALID
    held = len(verifier)

    verifier.apply_changes([Change(signal)])  # type: ignore[arg-type]
    await storage.close()

    assert len(verifier) == held
    assert (await verifier.verify(plain, permissions="docs.read")).code == Code.VALID
    assert (await verifier.verify(plain, permissions="admin")).code == Code.INSUFFICIENT_PERMISSIONS
    assert verifier.stats["stale_served"] == 2


@pytest.mark.parametrize("signal", ["lost", "all"])
async def test_after_a_lost_channel_every_cached_key_is_asked_of_storage_again(
    world: World, counting: CountingStorage, verifier: Verifier, signal: str
) -> None:
    api = await world.api()
    key, plain = await world.key(api.id)
    _, other = await world.key(api.id)
    await verifier.verify(plain)
    await verifier.verify(other)
    await world.update(key, revoked_at=1)  # a change whose message this process missed
    counting.calls.clear()

    verifier.apply_changes([Change(signal)])  # type: ignore[arg-type]

    assert (await verifier.verify(plain)).code == Code.REVOKED
    assert (await verifier.verify(other)).code == Code.VALID
    assert counting.calls == ["load_for_verify", "load_for_verify"]
    counting.calls.clear()
    await verifier.verify(other)
    assert counting.calls == [], "revalidated once, then cached again"


async def test_while_the_channel_is_lost_entries_live_the_fallback_ttl(
    world: World, clock: ManualClock, counting: CountingStorage
) -> None:
    verifier = Verifier(counting, clock, ttl_s=60.0, fallback_ttl_s=TTL)
    api = await world.api()
    _, plain = await world.key(api.id)
    await verifier.verify(plain)
    verifier.apply_changes([Change("lost")])
    await verifier.verify(plain)  # revalidated
    counting.calls.clear()

    clock.advance(TTL - 0.1)
    verifier.apply_changes([Change("lost")])  # said again at each failed reconnection: changes nothing
    await verifier.verify(plain)
    assert counting.calls == []
    clock.advance(0.2)
    await verifier.verify(plain)
    assert counting.calls == ["load_for_verify"], "no change can reach the cache: the short TTL applies"

    verifier.apply_changes([Change("all")])  # the channel is back
    await verifier.verify(plain)
    counting.calls.clear()
    clock.advance(TTL * 2)
    await verifier.verify(plain)
    assert counting.calls == [], "changes are pushed again: the long TTL applies"


async def test_entries_kept_after_a_lost_channel_still_obey_changes_and_the_size_bound(
    world: World, storage: SqlStorage, clock: ManualClock, counting: CountingStorage
) -> None:
    verifier = Verifier(counting, clock, ttl_s=TTL, size=3)
    first, second = await world.api(), await world.api()
    plains = [(await world.key(first.id))[1] for _ in range(2)] + [(await world.key(second.id))[1]]
    for plain in plains:
        await verifier.verify(plain)
    verifier.apply_changes([Change("lost")])
    verifier.apply_changes([Change("api", first.id)])  # say, its allowlist changed: no fallback for its keys
    assert len(verifier) == 1
    fresh = [(await world.key(second.id))[1] for _ in range(3)]
    for plain in fresh:
        await verifier.verify(plain)
    assert len(verifier) == 3, "fallbacks count toward the bound, and go first"
    await storage.close()
    with pytest.raises(StorageError):
        await verifier.verify(plains[2])  # evicted
    with pytest.raises(StorageError):
        await verifier.verify(plains[0])  # dropped by the API's change


async def test_the_cache_evicts_the_least_recently_used_key(
    world: World, counting: CountingStorage, clock: ManualClock
) -> None:
    verifier = Verifier(counting, clock, size=3)
    api = await world.api()
    k1, k2, k3, k4 = [(await world.key(api.id))[1] for _ in range(4)]
    for plain in (k1, k2, k3):
        await verifier.verify(plain)
    await verifier.verify(k1)  # k2 is now the least recently used
    counting.calls.clear()

    await verifier.verify(k4)
    assert counting.calls == ["load_for_verify"]
    assert len(verifier) == 3

    counting.calls.clear()
    for plain in (k1, k3, k4):
        assert (await verifier.verify(plain)).code == Code.VALID
    assert counting.calls == []
    assert (await verifier.verify(k2)).code == Code.VALID
    assert counting.calls == ["load_for_verify"]


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="reference counts and the collector are CPython's")
async def test_an_entry_the_cache_drops_is_freed_at_once_and_never_visited_by_the_collector(
    world: World, counting: CountingStorage, clock: ManualClock
) -> None:
    # Tail latency (issue 14): a full garbage collection visits every object it tracks; were cached entries among
    # them (or freed only by it, as parts of reference cycles), it would hold the event loop for a second with a
    # million cached keys.
    verifier = Verifier(counting, clock, size=1)
    api = await world.api()
    (_, first), (key, second) = [await world.key(api.id) for _ in range(2)]
    result = await verifier.verify(first)
    entry = result.entry
    assert result.code == Code.VALID
    assert entry is not None
    assert not gc.is_tracked(entry)
    assert not gc.is_tracked(result)
    assert (await verifier.verify(first)) is result  # the VALID answer is built once per entry
    assert not gc.is_tracked(verifier._cache)  # nor is the table, through which it would visit every entry

    await verifier.verify(second)  # evicts the first
    # Nothing but these two names (and getrefcount's argument) refers to either: dropping them frees both.
    assert sys.getrefcount(result) == 2
    assert sys.getrefcount(entry) == 3  # the result's reference too
    del result, entry

    cached = await verifier.verify(second)
    verifier.apply_changes([Change("key", key.digest.hex())])  # a change drops an entry just as well
    assert sys.getrefcount(cached) == 2


async def test_the_negative_cache_is_bounded(counting: CountingStorage, clock: ManualClock) -> None:
    verifier = Verifier(counting, clock, negative_size=3)
    u1, u2, u3, u4 = [keyformat.generate("ks") for _ in range(4)]
    for plain in (u1, u2, u3, u4):
        await verifier.verify(plain)
    counting.calls.clear()

    for plain in (u2, u3, u4):
        await verifier.verify(plain)
    assert counting.calls == []
    await verifier.verify(u1)  # the oldest was forgotten
    assert counting.calls == ["load_for_verify"]


async def test_a_flood_of_unknown_keys_does_not_evict_real_ones(
    world: World, counting: CountingStorage, clock: ManualClock
) -> None:
    verifier = Verifier(counting, clock, size=2, negative_size=10)
    api = await world.api()
    real = [(await world.key(api.id))[1] for _ in range(2)]
    for plain in real:
        await verifier.verify(plain)

    for _ in range(50):
        await verifier.verify(keyformat.generate("ks"))
    counting.calls.clear()

    for plain in real:
        assert (await verifier.verify(plain)).code == Code.VALID
    assert counting.calls == []
    assert len(verifier) == 2


# -- the same through the services, as the HTTP layer uses them --------------------------------------------------


async def test_verifying_through_the_services_makes_no_storage_call_once_warm(
    storage: SqlStorage, settings: Settings, clock: ManualClock
) -> None:
    counting = CountingStorage(storage)
    ks = Keystile.create(counting, settings, clock)
    created = await ks.root_keys.bootstrap()
    assert created is not None
    root_key = created[1]
    actor = Actor(await ks.root_keys.authenticate(root_key), "127.0.0.1", "pytest")
    api = await ks.apis.create(actor, NewApi(name="demo", ip_allowlist=["10.0.0.0/8"]))
    key, plain = await ks.keys.create(actor, api.id, NewKey(permissions=["a", "b", "c"], ip_allowlist=["10.1.0.0/16"]))
    request = KeyCheck(plain, api_id=api.id, permissions="a AND (b OR c)", ip="10.1.2.3")
    assert (await ks.verification.verify(actor.principal, request)).code == Code.VALID

    counting.calls.clear()
    for _ in range(100):
        principal = await ks.root_keys.authenticate(root_key)
        assert (await ks.verification.verify(principal, request)).code == Code.VALID
    assert counting.calls == []

    await ks.keys.revoke(actor, key.id)  # publishes the change: no waiting for the TTL
    counting.calls.clear()
    assert (await ks.verification.verify(actor.principal, request)).code == Code.REVOKED
    assert counting.calls == ["load_for_verify"]

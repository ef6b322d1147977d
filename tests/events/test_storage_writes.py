"""Event batches in storage (SPEC O1, O3, K4, X3), on every backend: rollups equal counts of the stored events,
``last_used_at`` only moves forward and shows on the key, and two writers on one PostgreSQL never deadlock."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from keystile.core.clock import ManualClock
from keystile.core.ids import new_id
from keystile.core.models import EventFilter, VerificationEvent
from keystile.core.ports import Storage
from keystile.errors import Conflict
from keystile.events import EventWriter
from keystile.service import Keystile
from keystile.storage import open_storage
from keystile.storage.postgresql import COPY_SLICE
from tests.analytics.helpers import BUCKETS, DAY, HOUR, MINUTE

from .conftest import World

PG_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgres)]


async def test_rollups_of_many_batches_equal_counts_of_the_stored_events(world: World) -> None:
    recorder = world.ks.events.recorder
    assert recorder is not None
    writer = EventWriter(world.ks.storage, recorder, world.clock, batch_size=7)
    rng = random.Random(5)
    start = int(world.clock.now() * 1000)
    for n in range(300):
        name = rng.choice(["alice", "alice", "bob", "gone", "carol", None])
        await world.verify(name, permissions=rng.choice([None, "docs.read", "docs.write"]))
        world.clock.advance(rng.choice([0.2, 7, 61, 900, 3 * 3600]))
        if n % 40 == 0:
            await writer.flush()  # batches of every size, some bucket spread over several of them
    await writer.flush()
    until = int(world.clock.now() * 1000) + DAY

    stored = await world.stored()
    assert len(stored) == 300
    assert len({e.outcome for e in stored}) >= 4
    for granularity, size in BUCKETS.items():
        for group_by, field in (("outcome", "outcome"), ("key", "key_id"), ("owner", "owner_id")):
            for where in ({}, {"api_id": world.api.id}, {"key_id": world.keys["alice"].id}, {"owner_id": "bob"}):
                expected = Counter(
                    (e.ts - e.ts % size, getattr(e, field))
                    for e in stored
                    if all(getattr(e, name) == value for name, value in where.items())
                )
                counts = await world.ks.storage.count_rollups(
                    granularity,  # type: ignore[arg-type]
                    group_by,  # type: ignore[arg-type]
                    EventFilter(since=start - start % DAY, until=until, **where),
                    limit=100_000,
                )
                assert {(c.bucket, c.group): c.count for c in counts} == dict(expected), (granularity, group_by)


async def test_last_used_at_moves_forward_only_and_shows_on_the_key(world: World) -> None:
    alice = world.keys["alice"]
    assert alice.last_used_at is None
    principal = world.actor.principal

    await world.verify("alice")
    used = int(world.clock.now() * 1000)
    world.clock.advance(60)
    await world.verify(None)  # an unknown key moves nothing
    await world.ks.events.flush()
    assert (await world.ks.keys.get(principal, alice.id)).last_used_at == used
    assert (await world.ks.keys.get(principal, world.keys["carol"].id)).last_used_at is None

    # A batch from another process, older than what is stored, arrives late: last_used_at stays.
    late = VerificationEvent(new_id("evt", used - HOUR), used - HOUR, "VALID", 5, api_id=alice.api_id, key_id=alice.id)
    await world.ks.events.write([late])
    assert (await world.ks.keys.get(principal, alice.id)).last_used_at == used

    await world.verify("alice", permissions="docs.write")  # any outcome is a use of the key
    await world.ks.events.flush()
    assert (await world.ks.keys.get(principal, alice.id)).last_used_at == used + 60_000


async def _write_concurrently(url: str, clock: ManualClock, key_ids: list[str], api_id: str) -> list[int]:
    """Two storages (as two server processes) write 20 batches each over the same keys and buckets, on days
    whose partitions do not exist yet; returns each key's newest ts."""
    rng = random.Random(3)
    base = int(clock.now() * 1000) + 2 * DAY
    batches: list[list[VerificationEvent]] = []
    for _ in range(40):
        batch = []
        for _ in range(250):
            ts = base + rng.randrange(3 * DAY)
            key_id = rng.choice(key_ids)
            batch.append(VerificationEvent(new_id("evt", ts), ts, rng.choice(["VALID", "RATE_LIMITED"]), 9,
                                           api_id=api_id, key_id=key_id, owner_id=key_id[-3:]))  # fmt: skip
        batches.append(batch)
    first, second = await open_storage(url, clock), await open_storage(url, clock)

    async def write(storage: Storage, mine: list[list[VerificationEvent]]) -> None:
        for batch in mine:
            await storage.write_events(batch)

    try:
        await asyncio.wait_for(asyncio.gather(write(first, batches[::2]), write(second, batches[1::2])), 120)
    finally:
        await first.close()
        await second.close()
    newest: dict[str, int] = {}
    for batch in batches:
        for e in batch:
            newest[e.key_id or ""] = max(newest.get(e.key_id or "", 0), e.ts)
    return [newest[key_id] for key_id in key_ids]


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
async def test_two_writers_on_one_postgresql_neither_deadlock_nor_lose_counts(
    world: World, database_url: str, clock: ManualClock
) -> None:
    key_ids = [k.id for k in world.keys.values()]

    newest = await _write_concurrently(database_url, clock, key_ids, world.api.id)

    assert len(await world.stored()) == 40 * 250
    days = await world.ks.storage.count_rollups("day", "key", EventFilter(), limit=1000)
    assert sum(c.count for c in days) == 40 * 250
    hours = await world.ks.storage.count_rollups("hour", "outcome", EventFilter(), limit=1000)
    assert sum(c.count for c in hours) == 40 * 250
    for key_id, ts in zip(key_ids, newest, strict=True):
        assert (await world.ks.keys.get(world.actor.principal, key_id)).last_used_at == ts


async def test_a_batch_is_all_or_nothing(world: World) -> None:
    alice = world.keys["alice"]
    now = int(world.clock.now() * 1000)
    good = VerificationEvent(new_id("evt", now), now, "VALID", 1, api_id=alice.api_id, key_id=alice.id)
    await world.ks.storage.write_events([good])
    fresh = VerificationEvent(new_id("evt", now + MINUTE), now + MINUTE, "VALID", 1, key_id=alice.id)

    with pytest.raises(Conflict):
        await world.ks.storage.write_events([fresh, good])  # good's id is taken: the whole batch fails

    assert [e.id for e in await world.stored()] == [good.id]
    minutes = await world.ks.storage.count_rollups("minute", "outcome", EventFilter(), limit=10)
    assert [(c.bucket, c.count) for c in minutes] == [(now - now % MINUTE, 1)]
    assert (await world.ks.keys.get(world.actor.principal, alice.id)).last_used_at == now


async def test_a_batch_larger_than_a_copy_slice_is_written_whole_and_all_or_nothing(world: World) -> None:
    # PostgreSQL COPYs a batch a slice at a time (yielding to the event loop between slices, issue 14): every
    # slice lands, and a failure in the last one takes the earlier ones with it.
    alice = world.keys["alice"]
    now = int(world.clock.now() * 1000)
    count = 2 * COPY_SLICE + 7

    def event(i: int) -> VerificationEvent:
        return VerificationEvent(new_id("evt", now + i), now + i, "VALID", 1, api_id=alice.api_id, key_id=alice.id)

    events = [event(i) for i in range(count)]
    await world.ks.storage.write_events(events)
    with pytest.raises(Conflict):
        await world.ks.storage.write_events([event(count + i) for i in range(count)] + events[-1:])

    assert sorted(e.id for e in await world.stored()) == sorted(e.id for e in events)


async def test_events_with_keys_unknown_to_storage_are_written(ks: Keystile, clock: ManualClock) -> None:
    """Events of a key deleted since (or written by a bulk load) are kept: the log is history."""
    now = int(clock.now() * 1000)
    events = [VerificationEvent(new_id("evt", now + i), now + i, "VALID", 1, api_id="api_x", key_id="key_gone")
              for i in range(3)]  # fmt: skip
    await ks.events.write(events)
    assert len(await ks.storage.list_events(EventFilter(key_id="key_gone"), before=None, limit=10)) == 3

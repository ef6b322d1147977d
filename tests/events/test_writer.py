"""The background writer of verification events (SPEC O1), on every backend: it writes the buffer in batches,
keeps a failed batch with the same ids and retries it, never writes a batch twice, and loses nothing on close.

Verifications go through the real service, so the events are what serving records."""

from __future__ import annotations

from collections import Counter

import pytest

from keystile.core.models import EventFilter
from keystile.errors import StorageError
from keystile.events import EventRecorder, EventWriter
from keystile.http.verify import check_of
from keystile.schemas import VerifyRequest

from .conftest import FlakyStorage, World


def recorder_of(world: World) -> EventRecorder:
    recorder = world.ks.events.recorder
    assert recorder is not None
    return recorder


async def traffic(world: World, count: int, start: int = 0) -> list[str]:
    """``count`` verifications of mixed outcomes, request ids ``req_<n>``; their outcomes in order."""
    outcomes = []
    for n in range(start, start + count):
        name = ("alice", "gone", None, "carol")[n % 4]
        outcomes.append(await world.verify(name, request_id=f"req_{n}"))
        world.clock.advance(0.001)
    return outcomes


async def test_the_buffer_is_written_in_batches_of_the_batch_size(world: World) -> None:
    recorder = recorder_of(world)
    writer = EventWriter(world.ks.storage, recorder, world.clock, batch_size=4)
    outcomes = await traffic(world, 10)

    assert await writer.flush() == 10

    assert (writer.stats.batches, writer.stats.written, len(recorder)) == (3, 10, 0)
    stored = await world.stored()
    assert [e.request_id for e in stored] == [f"req_{n}" for n in reversed(range(10))]
    assert [e.outcome for e in reversed(stored)] == outcomes
    assert Counter(outcomes) == {"VALID": 5, "REVOKED": 3, "NOT_FOUND": 2}


async def test_a_failed_batch_stays_buffered_and_is_retried_with_the_same_ids(world: World) -> None:
    recorder = recorder_of(world)
    flaky = FlakyStorage(world.ks.storage, fail=2)
    writer = EventWriter(flaky.as_storage(), recorder, world.clock, batch_size=4)
    await traffic(world, 6)

    for _ in range(2):
        with pytest.raises(StorageError):
            await writer.flush()
        assert len(recorder) == 6
    await traffic(world, 3, start=6)  # recorded while storage is down
    assert await writer.flush() == 9

    assert writer.stats.write_errors == 2
    assert writer.stats.written == 9
    assert flaky.attempts[0] == flaky.attempts[1] == flaky.attempts[2]  # the same batch, the same ids
    stored = await world.stored()
    assert sorted(e.request_id or "" for e in stored) == sorted(f"req_{n}" for n in range(9))
    assert len({e.id for e in stored}) == 9


async def test_a_batch_whose_commit_was_not_acknowledged_is_not_written_twice(world: World) -> None:
    recorder = recorder_of(world)
    flaky = FlakyStorage(world.ks.storage, fail=1, lose_ack=True)
    writer = EventWriter(flaky.as_storage(), recorder, world.clock, batch_size=100)
    await traffic(world, 5)

    with pytest.raises(StorageError):
        await writer.flush()
    assert await writer.flush() == 5  # the retry clashes with what was committed: written, not an error

    assert (writer.stats.written, writer.stats.batches, writer.stats.write_errors) == (5, 1, 1)
    assert len(await world.stored()) == 5
    counts = await world.ks.storage.count_rollups("day", "outcome", EventFilter(), limit=100)
    assert sum(c.count for c in counts) == 5  # rollups were not added twice either


async def test_a_batch_storage_refuses_as_a_bug_is_discarded_and_counted(world: World) -> None:
    recorder = recorder_of(world)
    flaky = FlakyStorage(world.ks.storage, refuse=True)
    writer = EventWriter(flaky.as_storage(), recorder, world.clock, batch_size=100)
    await traffic(world, 3)

    assert await writer.flush() == 3  # not kept: it would block every event after it

    assert (writer.stats.rejected, writer.stats.written, len(recorder)) == (3, 0, 0)


async def test_closing_writes_everything_buffered(world: World) -> None:
    events = world.ks.events
    events.start(retention=False)
    await traffic(world, 7)

    await events.close()

    assert len(await world.stored()) == 7
    assert (events.stats.buffered, events.stats.written) == (0, 7)


async def test_each_event_carries_what_its_verification_knew(world: World) -> None:
    alice, carol = world.keys["alice"], world.keys["carol"]
    await world.verify("alice", "req-1", ip="203.0.113.7", tags=["path=/docs", "x" * 128])
    await world.verify("alice", "req-2", permissions="docs.write")
    await world.verify("carol", "req 3 is not a request id", api_id=world.api.id)
    await world.verify(None, None, api_id="api_asked_for\x00")
    await world.verify("bob")
    await world.verify("bob")
    await world.verify("gone")
    await world.ks.events.flush()

    stored = {e.request_id: e for e in await world.stored()}
    first = stored["req-1"]
    assert (first.api_id, first.key_id, first.owner_id, first.outcome) == (world.api.id, alice.id, "alice", "VALID")
    assert (first.ip, first.tags) == ("203.0.113.7", ("path=/docs", "x" * 128))
    assert isinstance(first.latency_us, int)
    assert first.latency_us >= 0  # measured, not a speed target
    assert stored["req-2"].outcome == "INSUFFICIENT_PERMISSIONS"
    # A key of another API than the one asked for is not found, and its key is not revealed.
    foreign = [e for e in stored.values() if e.key_id is None and e.api_id == world.api.id]
    assert [e.outcome for e in foreign] == ["NOT_FOUND"]
    assert foreign[0].request_id == foreign[0].id  # not a request id: the event's own id stands in
    assert carol.id not in {e.key_id for e in stored.values()}
    unknown = [e for e in stored.values() if e.api_id == "api_asked_for\ufffd"]
    assert [e.outcome for e in unknown] == ["NOT_FOUND"]
    assert sorted(e.outcome for e in stored.values() if e.key_id == world.keys["bob"].id) == ["RATE_LIMITED", "VALID"]
    assert [e.outcome for e in stored.values() if e.key_id == world.keys["gone"].id] == ["REVOKED"]


async def test_a_key_pasted_as_the_api_id_or_a_tag_is_not_stored(world: World) -> None:
    alice = world.plain["alice"]
    imported = "sk_live_" + "a1B2" * 6  # a key of another shape: only the request's own key can tell
    await world.verify(None, "pasted-api", api_id=alice)  # the key and its id swapped: NOT_FOUND
    await world.verify(None, "pasted-tag", tags=[f"key={alice}", "path=/docs", imported])
    await world.verify("alice", "own-tag", tags=[alice, "path=/docs"])
    request = VerifyRequest(key=imported, api_id=f"x-{imported}", tags=[imported, "ok"])
    await world.ks.verification.verify(world.actor.principal, check_of(request), request_id="own-imported")
    await world.ks.events.flush()

    stored = {e.request_id: e for e in await world.stored()}
    assert (stored["pasted-api"].outcome, stored["pasted-api"].api_id) == ("NOT_FOUND", None)
    assert stored["pasted-tag"].tags == ("path=/docs", imported)  # another key than the request's: no telling
    assert (stored["own-tag"].outcome, stored["own-tag"].tags) == ("VALID", ("path=/docs",))
    assert (stored["own-imported"].api_id, stored["own-imported"].tags) == (None, ("ok",))
    assert stored["own-imported"].outcome == "NOT_FOUND"


async def test_events_of_one_millisecond_list_in_the_order_they_happened(world: World) -> None:
    for n in range(50):
        await world.verify("alice", f"req_{n}")  # the manual clock does not move
    await world.ks.events.flush()

    assert [e.request_id for e in await world.stored()] == [f"req_{n}" for n in reversed(range(50))]

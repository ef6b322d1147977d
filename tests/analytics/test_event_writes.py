"""The event write path on every backend: recorded verifications keep their order within a millisecond, a batch
spanning days lands whole (on PostgreSQL, COPY into each day's partition), and a batch written twice is refused
as a whole without counting twice (SPEC O1, O3)."""

from __future__ import annotations

import pytest

from keystile.core.models import EventFilter
from keystile.core.verify import KeyCheck
from keystile.errors import Conflict
from keystile.storage import SqlStorage

from .conftest import Deployment
from .helpers import DAY, HOUR, T0, event, expected_counts, write_events


async def test_verifications_recorded_in_one_millisecond_list_in_the_order_they_happened(
    deployment: Deployment, storage: SqlStorage
) -> None:
    d = deployment
    # The manual clock stands still: all of these happen in the same millisecond.
    for index in range(300):
        await d.ks.verification.verify(d.admin, KeyCheck(f"sk_unknown_{index}"), f"req-{index:03d}")
    assert await d.ks.events.flush() == 300

    listed = await storage.list_events(EventFilter(), before=None, limit=500)
    assert [e.request_id for e in listed] == [f"req-{index:03d}" for index in reversed(range(300))]
    assert len({e.id for e in listed}) == 300
    assert [e.id for e in listed] == sorted((e.id for e in listed), reverse=True)


async def test_a_batch_over_several_days_is_written_whole(deployment: Deployment, storage: SqlStorage) -> None:
    d = deployment
    api_id, key_id, owner_id = d.triples()[0]
    events = [
        event(T0 - 2 * DAY + offset * HOUR, "VALID", api_id=api_id, key_id=key_id, owner_id=owner_id, tags=("x",))
        for offset in range(0, 72, 5)
    ]
    await write_events(storage, events)

    listed = await storage.list_events(EventFilter(key_id=key_id), before=None, limit=100)
    assert sorted(listed, key=lambda e: e.id) == sorted(events, key=lambda e: e.id)
    if storage.dialect == "postgresql":
        assert len(await storage.event_partitions()) == 4  # the batch spans four UTC days
    series = await d.ks.analytics.verifications(
        d.admin, EventFilter(key_id=key_id, since=T0 - 3 * DAY, until=T0 + 2 * DAY), granularity="day"
    )
    since, until = series.since, series.until
    expected = expected_counts(events, "day", "outcome", since=since, until=until)
    assert {(c.bucket, c.group): c.count for c in series.counts} == expected


async def test_a_batch_written_twice_is_refused_and_counted_once(deployment: Deployment, storage: SqlStorage) -> None:
    d = deployment
    api_id, key_id, owner_id = d.triples()[1]
    events = [event(T0 + i, "VALID", api_id=api_id, key_id=key_id, owner_id=owner_id) for i in range(50)]
    await write_events(storage, events)

    with pytest.raises(Conflict):
        await write_events(storage, events)

    listed = await storage.list_events(EventFilter(key_id=key_id), before=None, limit=100)
    assert len(listed) == 50
    series = await d.ks.analytics.verifications(
        d.admin, EventFilter(key_id=key_id, since=T0, until=T0 + HOUR), granularity="hour"
    )
    assert [(c.group, c.count) for c in series.counts] == [("VALID", 50)]

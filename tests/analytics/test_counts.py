"""Verification counts over time (SPEC O3) through the services, on every backend: they equal counts of the raw
events, cover whole buckets, and refuse ranges and answers beyond their bounds."""

from __future__ import annotations

from typing import Any

import pytest

from keystile.core.clock import ManualClock
from keystile.core.models import EventFilter, VerificationEvent
from keystile.errors import Forbidden, InvalidInput, NotFound
from keystile.service import analytics

from .conftest import Deployment
from .helpers import BUCKETS, DAY, HOUR, MINUTE, T0, event, expected_counts, scattered, write_events

SINCE = T0 - 3 * DAY - DAY // 2  # mid-day: a range that starts inside a bucket of every size
UNTIL = T0


@pytest.fixture
async def logged(deployment: Deployment) -> list[VerificationEvent]:
    events = scattered(800, start=SINCE, span_ms=UNTIL - SINCE, keys=deployment.triples(), seed=11)
    await write_events(deployment.ks.storage, events)
    return events


def answered(series: analytics.Series) -> dict[tuple[int, str | None], int]:
    return {(c.bucket, c.group): c.count for c in series.counts}


@pytest.mark.parametrize("granularity", ["minute", "hour", "day"])
@pytest.mark.parametrize("group_by", ["outcome", "key", "owner"])
async def test_counts_equal_the_raw_events_for_every_granularity_and_grouping(
    deployment: Deployment, logged: list[VerificationEvent], granularity: str, group_by: str
) -> None:
    d = deployment
    size = BUCKETS[granularity]
    # The widest range each granularity allows within the data, starting at a whole bucket.
    since = max(SINCE - SINCE % size, UNTIL - analytics.MAX_BUCKETS * size)
    filters: list[dict[str, Any]] = [{}, {"api_id": d.a.id}, {"key_id": d.a2.id}, {"owner_id": "alice"}]
    filters.append({"api_id": d.b.id, "outcome": "VALID"})
    for where in filters:
        series = await d.ks.analytics.verifications(
            d.admin, EventFilter(since=since, until=UNTIL, **where), granularity=granularity, group_by=group_by
        )
        expected = expected_counts(logged, granularity, group_by, since=since, until=UNTIL, **where)
        assert expected, where
        assert answered(series) == expected, where
        assert [(c.bucket, c.group or "") for c in series.counts] == sorted(
            (c.bucket, c.group or "") for c in series.counts
        )


async def test_a_range_is_widened_to_whole_buckets(deployment: Deployment, logged: list[VerificationEvent]) -> None:
    d = deployment
    since, until = T0 - 2 * DAY + 17 * MINUTE + 5, T0 - DAY + 30 * MINUTE
    series = await d.ks.analytics.verifications(d.admin, EventFilter(since=since, until=until), granularity="hour")
    assert (series.since, series.until) == (since - since % HOUR, until - until % HOUR + HOUR)
    expected = expected_counts(logged, "hour", "outcome", since=series.since, until=series.until)
    assert answered(series) == expected
    assert series.granularity == "hour"
    assert series.group_by == "outcome"


@pytest.mark.parametrize(("granularity", "span"), [("minute", HOUR), ("hour", DAY), ("day", 30 * DAY), (None, DAY)])
async def test_without_a_range_the_last_buckets_up_to_now_are_counted(
    deployment: Deployment, clock: ManualClock, granularity: str | None, span: int
) -> None:
    d = deployment
    clock.advance(90.5)  # now: T0 + 90.5 s, inside a minute, an hour and a day
    now = T0 + 90_500
    size = BUCKETS[granularity or "hour"]
    end = now - now % size + size
    inside = [event(end - span, api_id=d.a.id), event(now, api_id=d.a.id)]
    outside = [event(end - span - 1, api_id=d.a.id)]
    await write_events(d.ks.storage, inside + outside)

    series = await d.ks.analytics.verifications(d.admin, EventFilter(), granularity=granularity)
    assert (series.since, series.until) == (end - span, end)
    assert sum(c.count for c in series.counts) == 2


async def test_a_scoped_root_key_counts_only_its_apis(deployment: Deployment, logged: list[VerificationEvent]) -> None:
    d = deployment
    where = EventFilter(since=SINCE - SINCE % DAY, until=UNTIL)
    series = await d.ks.analytics.verifications(d.scoped, where, granularity="day", group_by="key")
    assert answered(series) == expected_counts(logged, "day", "key", since=where.since or 0, until=UNTIL, api_id=d.a.id)
    with pytest.raises(NotFound):
        await d.ks.analytics.verifications(d.scoped, EventFilter(key_id=d.b1.id))
    with pytest.raises(NotFound):
        await d.ks.analytics.verifications(d.scoped, EventFilter(api_id=d.b.id))
    with pytest.raises(Forbidden):
        await d.ks.analytics.verifications(d.blind, EventFilter())


@pytest.mark.parametrize(
    ("where", "options", "field"),
    [
        (EventFilter(), {"granularity": "week"}, "granularity"),
        (EventFilter(), {"group_by": "api"}, "group_by"),
        (EventFilter(outcome="OK"), {}, "outcome"),
        (EventFilter(since=T0, until=T0 - 1), {}, "since"),
        (EventFilter(since=T0 - (analytics.MAX_BUCKETS + 1) * HOUR, until=T0), {"granularity": "hour"}, "since"),
        (EventFilter(since=T0 - analytics.MAX_BUCKETS * MINUTE - 1, until=T0), {"granularity": "minute"}, "since"),
    ],
)
async def test_bad_queries_are_refused_naming_the_parameter(
    deployment: Deployment, where: EventFilter, options: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        await deployment.ks.analytics.verifications(deployment.admin, where, **options)
    assert raised.value.extra["field"] == field


async def test_an_answer_with_too_many_counts_is_refused(
    deployment: Deployment, logged: list[VerificationEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analytics, "MAX_COUNTS", 5)
    with pytest.raises(InvalidInput) as raised:
        await deployment.ks.analytics.verifications(
            deployment.admin, EventFilter(since=SINCE, until=UNTIL), granularity="day", group_by="key"
        )
    assert raised.value.code == "too_many_counts"

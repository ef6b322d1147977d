"""The verification log read through the services (SPEC O2), on every backend: filters, paging, scoping."""

from __future__ import annotations

from typing import Any

import pytest

from keystile.core.models import EventFilter, VerificationEvent
from keystile.errors import Forbidden, InvalidInput, NotFound
from keystile.service import Principal

from .conftest import Deployment
from .helpers import HOUR, T0, event, scattered, write_events


async def read_all(d: Deployment, where: EventFilter, *, limit: int, who: Principal | None = None) -> list[str]:
    """Every page of the log, in order, as event ids; checks that each page but the last is full."""
    ids: list[str] = []
    cursor = None
    while True:
        page = await d.ks.analytics.logs(who or d.admin, where, cursor=cursor, limit=limit)
        ids.extend(e.id for e in page.items)
        if page.next_cursor is None:
            return ids
        assert len(page.items) == limit
        cursor = page.next_cursor


def newest_first(events: list[VerificationEvent], **where: Any) -> list[str]:
    since, until = where.pop("since", None), where.pop("until", None)
    chosen = [
        e
        for e in events
        if all(getattr(e, name) == value for name, value in where.items())
        and (since is None or e.ts >= since)
        and (until is None or e.ts < until)
    ]
    return [e.id for e in sorted(chosen, key=lambda e: e.id, reverse=True)]


@pytest.fixture
async def logged(deployment: Deployment) -> list[VerificationEvent]:
    events = scattered(300, start=T0 - 6 * HOUR, span_ms=6 * HOUR, keys=deployment.triples())
    await write_events(deployment.ks.storage, events)
    return events


async def test_each_filter_finds_exactly_its_events_newest_first(
    deployment: Deployment, logged: list[VerificationEvent]
) -> None:
    d = deployment
    cases: list[dict[str, Any]] = [
        {},
        {"api_id": d.a.id},
        {"key_id": d.a1.id},
        {"owner_id": "alice"},
        {"outcome": "NOT_FOUND"},
        {"outcome": "RATE_LIMITED", "api_id": d.b.id},
        {"since": T0 - 4 * HOUR, "until": T0 - 2 * HOUR},
        {"key_id": d.a2.id, "outcome": "VALID", "since": T0 - 3 * HOUR},
    ]
    for where in cases:
        expected = newest_first(logged, **where)
        assert expected, where  # each case must prove something
        assert await read_all(d, EventFilter(**where), limit=1000) == expected, where


async def test_a_time_range_holds_its_first_millisecond_and_not_its_end(deployment: Deployment) -> None:
    # Events at both edges of the range and one millisecond on either side: since is inclusive, until exclusive.
    d = deployment
    key = d.triples()[0]
    edges = [event(ts, api_id=key[0], key_id=key[1]) for ts in (T0 - 1, T0, T0 + 1, T0 + HOUR - 1, T0 + HOUR)]
    await write_events(d.ks.storage, edges)

    for where in ({"since": T0, "until": T0 + HOUR}, {"since": T0, "until": T0 + HOUR, "key_id": key[1]}):
        listed = await read_all(d, EventFilter(**where), limit=2)
        assert listed == newest_first(edges, **where) == [e.id for e in reversed(edges[1:4])], where


async def test_pages_follow_each_other_without_gaps_or_duplicates(
    deployment: Deployment, logged: list[VerificationEvent]
) -> None:
    expected = newest_first(logged, owner_id="alice")
    for limit in (1, 7, 50, len(expected), len(expected) + 1):
        assert await read_all(deployment, EventFilter(owner_id="alice"), limit=limit) == expected


async def test_events_written_between_pages_do_not_shift_the_pages_still_to_come(
    deployment: Deployment, logged: list[VerificationEvent]
) -> None:
    d = deployment
    first = await d.ks.analytics.logs(d.admin, EventFilter(), cursor=None, limit=100)
    await write_events(d.ks.storage, [event(T0 + i, api_id=d.a.id, key_id=d.a1.id) for i in range(30)])
    rest = await read_all_from(d, first.next_cursor)
    assert [e.id for e in first.items] + rest == newest_first(logged)


async def read_all_from(d: Deployment, cursor: str | None) -> list[str]:
    ids: list[str] = []
    while cursor is not None:
        page = await d.ks.analytics.logs(d.admin, EventFilter(), cursor=cursor, limit=64)
        ids.extend(e.id for e in page.items)
        cursor = page.next_cursor
    return ids


async def test_an_event_reads_back_with_every_field(deployment: Deployment) -> None:
    d = deployment
    written = event(
        T0 - 5,
        "FORBIDDEN",
        api_id=d.a.id,
        key_id=d.a1.id,
        owner_id="alice",
        request_id="req_42",
        ip="2001:db8::1",
        tags=("path=/v1/forecast", "région"),
        latency_us=1234,
    )
    not_found = event(T0 - 4, "NOT_FOUND")
    await write_events(d.ks.storage, [written, not_found])

    page = await d.ks.analytics.logs(d.admin, EventFilter(), cursor=None, limit=10)
    assert page.items == [not_found, written]
    assert page.next_cursor is None


async def test_a_root_key_scoped_to_one_api_sees_only_its_events(
    deployment: Deployment, logged: list[VerificationEvent]
) -> None:
    d = deployment
    assert await read_all(d, EventFilter(), limit=40, who=d.scoped) == newest_first(logged, api_id=d.a.id)
    alices = await read_all(d, EventFilter(owner_id="alice"), limit=40, who=d.scoped)
    assert alices == newest_first(logged, api_id=d.a.id, owner_id="alice")
    assert await read_all(d, EventFilter(key_id=d.a1.id), limit=40, who=d.scoped) == newest_first(
        logged, key_id=d.a1.id
    )


@pytest.mark.parametrize(
    ("where", "code"),
    [
        (lambda d: EventFilter(api_id=d.b.id), "api_not_found"),
        (lambda d: EventFilter(key_id=d.b1.id), "key_not_found"),
        (lambda d: EventFilter(key_id="key_0000000000000000000000"), "key_not_found"),
        (lambda d: EventFilter(api_id=d.a.id, key_id=d.b1.id), "key_not_found"),
    ],
)
async def test_naming_another_api_or_its_key_is_not_found_for_a_scoped_root_key(
    deployment: Deployment, where: Any, code: str
) -> None:
    with pytest.raises(NotFound) as raised:
        await deployment.ks.analytics.logs(deployment.scoped, where(deployment), cursor=None, limit=10)
    assert raised.value.code == code


async def test_a_root_key_without_analytics_read_is_forbidden(deployment: Deployment) -> None:
    with pytest.raises(Forbidden):
        await deployment.ks.analytics.logs(deployment.blind, EventFilter(), cursor=None, limit=10)
    with pytest.raises(Forbidden):
        await deployment.ks.analytics.logs(deployment.blind, EventFilter(api_id=deployment.a.id), cursor=None, limit=10)


async def test_an_unscoped_root_key_may_filter_by_a_key_that_no_longer_exists(deployment: Deployment) -> None:
    d = deployment
    gone = event(T0 - 9, api_id=d.a.id, key_id="key_0000000000000000000000", owner_id="carol")
    await write_events(d.ks.storage, [gone])
    page = await d.ks.analytics.logs(d.admin, EventFilter(key_id=gone.key_id), cursor=None, limit=10)
    assert page.items == [gone]


@pytest.mark.parametrize(
    ("where", "cursor", "limit", "field"),
    [
        (EventFilter(outcome="valid"), None, None, "outcome"),
        (EventFilter(outcome="BOGUS"), None, None, "outcome"),
        (EventFilter(key_id=""), None, None, "key_id"),
        (EventFilter(owner_id="a\x00b"), None, None, "owner_id"),
        (EventFilter(since=T0, until=T0), None, None, "since"),
        (EventFilter(), "key_0000000000000000000000", None, "cursor"),
        (EventFilter(), None, 0, "limit"),
        (EventFilter(), None, 1001, "limit"),
    ],
)
async def test_bad_filters_are_refused_naming_the_parameter(
    deployment: Deployment, where: EventFilter, cursor: str | None, limit: int | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        await deployment.ks.analytics.logs(deployment.admin, where, cursor=cursor, limit=limit)
    assert raised.value.extra["field"] == field

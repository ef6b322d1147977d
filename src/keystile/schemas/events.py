"""Verification events and the counts over time of analytics (SPEC O1-O3)."""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct

from keystile.core.models import VerificationEvent
from keystile.core.ports import Granularity, GroupBy, RollupCount
from keystile.schemas.common import TimeOut, utc


class EventOut(Struct):
    """One verification. ``api_id`` is the key's API, else the one the request named; ``key_id`` and
    ``owner_id`` are null when the key was not found."""

    id: str
    ts: TimeOut
    request_id: str | None
    api_id: str | None
    key_id: str | None
    owner_id: str | None
    outcome: str
    ip: str | None
    tags: list[str]
    latency_us: int


class VerificationCount(Struct):
    """How many verifications fell in the bucket starting at ``ts`` for one ``group``: an outcome, a key id or
    an owner id (null for verifications without a key or owner)."""

    ts: TimeOut
    group: str | None
    count: int


class VerificationSeries(Struct):
    """Counts per bucket and group, oldest bucket first, over ``[since, until)`` (the asked range widened to
    whole buckets). Buckets and groups without verifications are left out: they count zero."""

    granularity: Granularity
    group_by: GroupBy
    since: TimeOut
    until: TimeOut
    items: list[VerificationCount]


def event_out(event: VerificationEvent) -> EventOut:
    return EventOut(
        event.id,
        utc(event.ts),
        event.request_id,
        event.api_id,
        event.key_id,
        event.owner_id,
        event.outcome,
        event.ip,
        list(event.tags),
        event.latency_us,
    )


def series_out(
    granularity: Granularity, group_by: GroupBy, since: int, until: int, counts: Sequence[RollupCount]
) -> VerificationSeries:
    return VerificationSeries(
        granularity,
        group_by,
        utc(since),
        utc(until),
        [VerificationCount(utc(c.bucket), c.group, c.count) for c in counts],
    )

"""Events for the analytics tests: built with chosen times, and written with their rollups.

:func:`write_events` goes through the storage call of the event writer, the one serving uses, so that rollups
are maintained the real way; the tests then read them back through the read side under test.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from keystile.core.ids import new_id
from keystile.core.models import VerificationEvent
from keystile.core.ports import Storage

T0 = 1_800_000_000_000
"""2027-01-15T08:00:00Z, a moment well inside a day, an hour and a minute of its own."""
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
BUCKETS = {"minute": MINUTE, "hour": HOUR, "day": DAY}


def event(ts: int, outcome: str = "VALID", **fields: Any) -> VerificationEvent:
    """An event at ``ts`` (its id carries that time, as the recorder makes them)."""
    return VerificationEvent(
        id=new_id("evt", ts), ts=ts, outcome=outcome, latency_us=fields.pop("latency_us", 42), **fields
    )


def scattered(
    count: int, *, start: int, span_ms: int, keys: Sequence[tuple[str, str, str | None]], seed: int = 7
) -> list[VerificationEvent]:
    """``count`` events at random times in ``[start, start + span_ms)`` over ``keys`` (``(api_id, key_id,
    owner_id)``) with mixed outcomes; one in ten is a NOT_FOUND without key or owner."""
    rng = random.Random(seed)
    outcomes = ["VALID", "VALID", "VALID", "RATE_LIMITED", "REVOKED", "INSUFFICIENT_PERMISSIONS"]
    made = []
    for _ in range(count):
        api_id, key_id, owner_id = rng.choice(keys)
        ts = start + rng.randrange(span_ms)
        if rng.random() < 0.1:
            made.append(event(ts, "NOT_FOUND", api_id=api_id))
        else:
            made.append(event(ts, rng.choice(outcomes), api_id=api_id, key_id=key_id, owner_id=owner_id))
    return made


def expected_counts(
    events: Iterable[VerificationEvent], granularity: str, group_by: str, *, since: int, until: int, **where: Any
) -> dict[tuple[int, str | None], int]:
    """What analytics must answer, counted from the raw events themselves."""
    size = BUCKETS[granularity]
    counts: Counter[tuple[int, str | None]] = Counter()
    for e in events:
        if not since <= e.ts < until or any(getattr(e, name) != value for name, value in where.items()):
            continue
        group = {"outcome": e.outcome, "key": e.key_id, "owner": e.owner_id}[group_by]
        counts[(e.ts - e.ts % size, group)] += 1
    return dict(counts)


async def write_events(storage: Storage, events: Sequence[VerificationEvent]) -> None:
    """Write events as the event writer does: one batch, rollups and ``last_used_at`` included."""
    await storage.write_events(events)

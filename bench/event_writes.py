"""The event writer's cost per verification event with one key and with many keys in use (SPEC P6, O3).

What the writer process does for each batch (``keystile.events.child``): convert the records a server handed over
(:func:`keystile.events.writer.event_rows`) and write them in one transaction (``Storage.write_event_rows``: the
raw events, three rollup rows per event group, each key's ``last_used_at``). Timed as CPU seconds of this process
(the SQLite writer thread included) and wall time, per event, on a fresh SQLite file (or, with ``--storage
postgresql``, a throwaway PostgreSQL database on ``KEYSTILE_BENCH_PG_DSN``, whose own CPU only the wall time
shows) for each case:

* **one key**: every event of the same key (as the HTTP benchmarks verify it): the rollups of a batch are three rows;
* **many keys**: each event of a key drawn at random from ``--keys`` (a provider with many customers): nearly every
  event adds to rollup rows of its own, and its index entries land all over the file.

Then the analytics reads of the many-keys database are timed (best of 5): one key's minute counts, one owner's
hour counts, the API's day counts by outcome (read from the rollups through the filtered column's index).

The baseline is the one-key case of the same run; the ratio says what many keys cost on top. The keys are not
in the ``keys`` table (their ``last_used_at`` updates find no row), so a real server's writer pays a little more.

Run: ``python bench/event_writes.py [--events 200000] [--keys 20000] [--storage sqlite|postgresql]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keystile.core.clock import SystemClock
from keystile.core.models import EventFilter
from keystile.core.ports import Granularity, GroupBy
from keystile.events.recorder import FIELDS
from keystile.events.writer import BATCH_SIZE, EventIds, event_rows
from keystile.storage import SqlStorage, open_storage

API_ID = "api_0Jk2mXq8RkVx8kLz5YtN3u"
EVENTS_PER_S = 20_000
"""The pace the records' timestamps follow (about what one worker answers on this kind of machine)."""


@dataclass(frozen=True, slots=True)
class Case:
    keys: int
    events: int
    convert_us: float
    write_us: float
    wall_us: float
    reads_ms: dict[str, float]

    @property
    def total_us(self) -> float:
        return self.convert_us + self.write_us


def records(events: int, keys: int, start_s: float) -> list[Any]:
    """``events`` records' fields, flat, as a server's buffer holds them; keys drawn at random from ``keys``."""
    rng = random.Random(7)
    pool = [(f"key_{rng.getrandbits(128):032x}"[:26], f"own_{rng.getrandbits(64):016x}") for _ in range(keys)]
    fields: list[Any] = []
    for i in range(events):
        key_id, owner_id = pool[rng.randrange(keys)]
        fields += (
            start_s + i / EVENTS_PER_S,
            25_000,
            "VALID",
            API_ID,
            key_id,
            owner_id,
            API_ID,
            "10.1.2.3",
            None,
            None,
        )
    return fields


async def measure(url: str, events: int, keys: int) -> Case:
    storage = await open_storage(url, SystemClock())
    try:
        await storage.migrate()
        fields = records(events, keys, time.time())
        ids = EventIds()
        convert = write = 0.0
        step = BATCH_SIZE * FIELDS
        started = time.perf_counter()
        for start in range(0, len(fields), step):
            began = time.process_time()
            rows = event_rows(ids, fields[start : start + step])
            converted = time.process_time()
            await storage.write_event_rows(rows)
            convert += converted - began
            write += time.process_time() - converted
        wall = time.perf_counter() - started
        reads = await _reads(storage, fields) if keys > 1 else {}
        return Case(keys, events, convert / events * 1e6, write / events * 1e6, wall / events * 1e6, reads)
    finally:
        await storage.close()


async def _reads(storage: SqlStorage, fields: list[Any]) -> dict[str, float]:
    """Best-of-5 milliseconds of analytics over the events just written (the first event's key and owner)."""
    first_ms, last_ms = int(fields[0] * 1000), int(fields[-FIELDS] * 1000) + 1
    queries: dict[str, tuple[Granularity, GroupBy, EventFilter]] = {
        "one key, minute counts": ("minute", "outcome", EventFilter(key_id=fields[4], since=first_ms - 60_000)),
        "one owner, hour counts": ("hour", "outcome", EventFilter(owner_id=fields[5], until=last_ms + 3_600_000)),
        "the API, day counts by outcome": ("day", "outcome", EventFilter(api_id=API_ID)),
    }
    timed = {}
    for name, (granularity, group_by, where) in queries.items():
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            counts = await storage.count_rollups(granularity, group_by, where, limit=100_000)
            best = min(best, time.perf_counter() - began)
        if not counts:
            raise RuntimeError(f"{name}: no counts")
        timed[name] = best * 1000
    return timed


async def _postgresql(events: int, keys: int) -> tuple[Case, Case]:
    from load_events import throwaway_database  # asyncpg: only for this storage

    cases = []
    for count in (1, keys):
        async with throwaway_database(None, keep=False) as url:
            cases.append(await measure(url, events, count))
    return cases[0], cases[1]


def run(*, events: int = 200_000, keys: int = 20_000, storage: str = "sqlite") -> tuple[Case, Case]:
    if storage == "postgresql":
        return asyncio.run(_postgresql(events, keys))
    with tempfile.TemporaryDirectory(prefix="keystile-bench-writes-") as tmp:
        one = asyncio.run(measure(f"sqlite:///{Path(tmp) / 'one.db'}", events, 1))
        many = asyncio.run(measure(f"sqlite:///{Path(tmp) / 'many.db'}", events, keys))
    return one, many


def report(one: Case, many: Case, storage: str = "sqlite") -> str:
    lines = [
        f"Event writer, {storage}, batches of {BATCH_SIZE}: per event, conversion + one transaction per batch",
        "  case                      events  convert us  write us (CPU here)  wall us",
    ]
    for name, case in (("one key", one), (f"{many.keys:,} keys", many)):
        lines.append(
            f"  {name:<22} {case.events:>9,} {case.convert_us:>11.2f} {case.write_us:>20.2f} {case.wall_us:>8.2f}"
        )
    lines.append(f"  many keys / one key = {many.wall_us / one.wall_us:.2f}x (wall time)")
    lines += [f"  analytics, {many.keys:,} keys: {name} {ms:.2f} ms" for name, ms in many.reads_ms.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events per case (default 200,000)")
    parser.add_argument("--keys", type=int, default=20_000, help="keys in the many-keys case (default 20,000)")
    parser.add_argument("--storage", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    print(report(*run(events=args.events, keys=args.keys, storage=args.storage), storage=args.storage))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load synthetic verification events into PostgreSQL the way serving writes them, then check analytics (O1, O3).

Events are written through the event writer's bulk entry (:meth:`keystile.events.Events.write`, i.e.
``EventWriter.write`` -> ``Storage.write_events``): the very storage call the background writer makes for each
batch, so the day partitions, the minute/hour/day rollups and the keys' ``last_used_at`` are maintained the real
way, one transaction per batch.

The data set: ``--apis`` APIs and ``--keys`` keys (made through the services, real rows) shared by ``--owners``
owners (one key in ten has none). Each event picks its key from a Zipf-like distribution (key ``i`` weighs
``1/(i+1)``: a few hot keys and a long tail), an outcome (mostly ``VALID``, every other verification code too;
``NOT_FOUND`` carries no key nor owner), an IP, sometimes tags. Timestamps are spread evenly over the last
``--days`` days, batch after batch in time order as live traffic would arrive (each batch covers its own slice of
time, its events at random moments inside it).

After loading, the analytics service (what ``GET /v1/analytics/verifications`` answers) is compared with
``COUNT(*) ... GROUP BY`` over the raw ``events`` table, on a connection of its own:

* for a sample of keys (the hottest ones first, then random ones), every granularity (minute, hour, day) and
  grouping (outcome, key, owner) over the whole loaded range;
* for the whole data set, day by day, every granularity and grouping (``--check full``, the default);
* the total number of raw events, and ``last_used_at`` of the sampled keys (the newest event's time).

Queries the service refuses as too big (more than ``MAX_BUCKETS`` buckets or ``MAX_COUNTS`` counts) are split
into windows that fit, as a client would. Prints ``OK`` or the mismatches; exits 1 on a mismatch.

Run::

    .venv/bin/python bench/load_events.py --events 100000            # throwaway database, dropped at the end
    .venv/bin/python bench/load_events.py --keep                      # 10M events; prints the URL, keeps it

Without ``--database-url`` a throwaway database ``keystile_bench_<pid>_<hex>`` is created on the server of
``KEYSTILE_BENCH_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped at the end
unless ``--keep``. With ``--database-url`` the database must be empty (it is migrated here) and is never dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import secrets
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import asyncpg

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import NewApi, NewKey
from keystile.core.ids import new_id
from keystile.core.models import EventFilter, VerificationEvent
from keystile.core.verify import ALL_CODES
from keystile.errors import InvalidInput
from keystile.service import CLI_ACTOR, Keystile
from keystile.service.analytics import BUCKET_MS, MAX_BUCKETS, MAX_COUNTS
from keystile.storage import open_storage

ADMIN_DSN = os.environ.get("KEYSTILE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DAY_MS = 86_400_000
GRANULARITIES = ("minute", "hour", "day")
GROUPINGS = ("outcome", "key", "owner")
RAW_COLUMN = {"outcome": "outcome", "key": "key_id", "owner": "owner_id"}
# Outcome weights: mostly VALID, every code present.
OUTCOME_WEIGHTS = dict.fromkeys(ALL_CODES, 1) | {"VALID": 80, "NOT_FOUND": 4, "RATE_LIMITED": 5}
IPS = [f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(4), range(8), (1, 7, 42))]
TAGS: list[tuple[str, ...]] = [(), (), (), ("plan:pro",), ("region:eu", "plan:free")]

Counts = dict[tuple[int, str | None], int]


# -- the database -------------------------------------------------------------------------------------------------


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def throwaway_database(url: str | None, *, keep: bool) -> AsyncIterator[str]:
    """``url`` as it is, or a new database dropped on exit unless ``keep``."""
    if url is not None:
        yield url
        return
    name = f"keystile_bench_{os.getpid()}_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    made = f"{ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    try:
        yield made
    finally:
        if keep:
            print(f"kept the database: {made}")
            print(f"  drop it with: psql {ADMIN_DSN} -c 'DROP DATABASE \"{name}\" WITH (FORCE)'")
        else:
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the data set -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataSet:
    """What was loaded: APIs, keys as ``(api_id, key_id, owner_id)`` hottest first, owners, and the time range."""

    apis: list[str]
    keys: list[tuple[str, str, str | None]]
    owners: int
    since: int  # first event's day start (epoch ms)
    until: int  # the day after the last event's day (exclusive)
    events: int


async def make_keys(ks: Keystile, *, apis: int, keys: int, owners: int, seed: int) -> list[tuple[str, str, str | None]]:
    """APIs and keys through the services (real rows: ``last_used_at`` is written to them)."""
    rng = random.Random(seed)
    api_ids = [(await ks.apis.create(CLI_ACTOR, NewApi(name=f"bench-{i}"))).id for i in range(apis)]
    made = []
    for i in range(keys):
        api_id = api_ids[i % apis]
        owner = None if rng.random() < 0.1 else f"owner-{rng.randrange(owners)}"
        key, _ = await ks.keys.create(CLI_ACTOR, api_id, NewKey(name=f"bench-{i}", owner_id=owner))
        made.append((api_id, key.id, owner))
    return made


def generate(
    triples: Sequence[tuple[str, str, str | None]],
    apis: Sequence[str],
    *,
    events: int,
    start: int,
    end: int,
    batch: int,
    seed: int,
) -> Iterator[list[VerificationEvent]]:
    """Batches of events over ``[start, end)`` in time order, each batch inside its own slice of time."""
    rng = random.Random(seed)
    cum_keys = list(itertools.accumulate(1 / (i + 1) for i in range(len(triples))))
    outcomes = list(OUTCOME_WEIGHTS)
    cum_outcomes = list(itertools.accumulate(OUTCOME_WEIGHTS.values()))
    span = end - start
    done = 0
    while done < events:
        size = min(batch, events - done)
        lo = start + span * done // events
        hi = start + span * (done + size) // events
        stamps = sorted(rng.randrange(lo, max(hi, lo + 1)) for _ in range(size))
        picked = rng.choices(triples, cum_weights=cum_keys, k=size)
        codes = rng.choices(outcomes, cum_weights=cum_outcomes, k=size)
        made = []
        for ts, (api_id, key_id, owner_id), code in zip(stamps, picked, codes, strict=True):
            event_id = new_id("evt", ts)
            ip = IPS[rng.randrange(len(IPS))]
            tags = TAGS[rng.randrange(len(TAGS))]
            latency = rng.randrange(40, 4000)
            if code == "NOT_FOUND":  # no key, no owner; the API the request named
                api_id, key_id, owner_id = apis[rng.randrange(len(apis))], None, None
            made.append(VerificationEvent(event_id, ts, code, latency, event_id, api_id, key_id, owner_id, ip, tags))
        done += size
        yield made


async def load(
    ks: Keystile,
    triples: Sequence[tuple[str, str, str | None]],
    apis: Sequence[str],
    *,
    events: int,
    days: int,
    batch: int,
    seed: int,
    owners: int,
) -> DataSet:
    """Write ``events`` events over the last ``days`` days through ``ks.events.write``, printing progress."""
    end = int(time.time() * 1000)
    start = end - days * DAY_MS
    written = 0
    began = last_print = time.perf_counter()
    write_s = 0.0
    for made in generate(triples, apis, events=events, start=start, end=end, batch=batch, seed=seed):
        t0 = time.perf_counter()
        await ks.events.write(made)
        write_s += time.perf_counter() - t0
        written += len(made)
        now = time.perf_counter()
        if now - last_print >= 10 or written == events:
            last_print = now
            print(
                f"  {written:>12,} events  {written / (now - began):>9,.0f} events/s overall"
                f"  ({written / write_s:,.0f}/s inside write_events)",
                flush=True,
            )
    elapsed = time.perf_counter() - began
    print(
        f"loaded {written:,} events in {elapsed:,.1f} s: {written / elapsed:,.0f} events/s "
        f"(write_events: {write_s:,.1f} s, {written / write_s:,.0f} events/s; the rest is generating them)"
    )
    return DataSet(list(apis), list(triples), owners, start - start % DAY_MS, end - end % DAY_MS + DAY_MS, written)


# -- the check ----------------------------------------------------------------------------------------------------


async def service_counts(
    ks: Keystile, where: EventFilter, granularity: str, group_by: str, *, groups: int, since: int, until: int
) -> tuple[Counts, int]:
    """What analytics answers over ``[since, until)``, in windows the service accepts; (counts, queries)."""
    size = BUCKET_MS[granularity]  # type: ignore[index]
    window = max(1, min(MAX_BUCKETS, MAX_COUNTS // max(1, groups))) * size
    counts: Counts = {}
    queries = 0
    start = since
    while start < until:
        stop = min(until, start + window)
        try:
            series = await ks.analytics.verifications(
                CLI_ACTOR.principal,
                replace(where, since=start, until=stop),
                granularity=granularity,
                group_by=group_by,
            )
        except InvalidInput as exc:
            if exc.code != "too_many_counts" or window == size:
                raise
            window = max(size, (window // size // 2) * size)
            continue
        queries += 1
        for count in series.counts:
            counts[(count.bucket, count.group)] = counts.get((count.bucket, count.group), 0) + count.count
        start = stop
    return counts, queries


async def raw_counts(
    conn: asyncpg.Connection, granularity: str, group_by: str, *, since: int, until: int, key_id: str | None = None
) -> Counts:
    """``COUNT(*) ... GROUP BY`` bucket and group over the raw events."""
    size = BUCKET_MS[granularity]  # type: ignore[index]
    column = RAW_COLUMN[group_by]
    where = "ts >= $2 AND ts < $3" + (" AND key_id = $4" if key_id is not None else "")
    args: list[object] = [size, since, until] + ([key_id] if key_id is not None else [])
    rows = await conn.fetch(
        f"SELECT ts - ts % $1 AS bucket, {column} AS grp, COUNT(*) AS n FROM events WHERE {where} GROUP BY 1, 2",
        *args,
    )
    return {(int(row["bucket"]), row["grp"]): int(row["n"]) for row in rows}


def compare(label: str, answered: Counts, expected: Counts) -> list[str]:
    """Mismatch lines (at most five shown per check) between analytics' answer and the raw counts."""
    if answered == expected:
        return []
    wrong = sorted(
        (k for k in answered.keys() | expected.keys() if answered.get(k) != expected.get(k)),
        key=lambda k: (k[0], k[1] or ""),
    )
    lines = [f"MISMATCH {label}: {len(wrong)} of {len(expected)} counts differ"]
    for bucket, group in wrong[:5]:
        got, want = answered.get((bucket, group)), expected.get((bucket, group))
        lines.append(f"    bucket {bucket} group {group}: analytics {got}, raw {want}")
    return lines


async def check(ks: Keystile, url: str, data: DataSet, *, sample: int, full: bool, seed: int) -> list[str]:
    """Compare analytics with the raw events (see the module docstring); returns the mismatches."""
    problems: list[str] = []
    groups = {"outcome": len(ALL_CODES), "key": len(data.keys) + 1, "owner": data.owners + 1}
    conn = await asyncpg.connect(url)
    try:
        total = await conn.fetchval("SELECT COUNT(*) FROM events")
        line = f"raw events: {total:,} stored, {data.events:,} written"
        print(("OK   " if total == data.events else "BAD  ") + line)
        if total != data.events:
            problems.append(f"MISMATCH {line}")

        rng = random.Random(seed + 1)
        tail = data.keys[3:]
        sampled = data.keys[:3] + rng.sample(tail, min(len(tail), max(0, sample - 3)))
        began = time.perf_counter()
        calls = checked = 0
        for _, key_id, _ in sampled:
            for granularity, group_by in itertools.product(GRANULARITIES, GROUPINGS):
                answered, queries = await service_counts(
                    ks,
                    EventFilter(key_id=key_id),
                    granularity,
                    group_by,
                    groups=len(ALL_CODES),
                    since=data.since,
                    until=data.until,
                )
                expected = await raw_counts(
                    conn, granularity, group_by, since=data.since, until=data.until, key_id=key_id
                )
                calls += queries
                checked += len(expected)
                problems += compare(f"key {key_id} by {granularity}, grouped by {group_by}", answered, expected)
            newest = await conn.fetchval("SELECT MAX(ts) FROM events WHERE key_id = $1", key_id)
            stored = await conn.fetchval("SELECT last_used_at FROM keys WHERE id = $1", key_id)
            if newest != stored:
                problems.append(f"MISMATCH key {key_id}: last_used_at {stored}, newest event {newest}")
        print(
            f"{'OK  ' if not problems else 'BAD '} {len(sampled)} sampled keys x 3 granularities x 3 groupings: "
            f"{checked:,} counts compared, {calls:,} analytics queries, {time.perf_counter() - began:,.1f} s"
            " (and last_used_at)"
        )

        if full:
            began = time.perf_counter()
            calls = checked = 0
            before = len(problems)
            for day in range(data.since, data.until, DAY_MS):
                for granularity, group_by in itertools.product(GRANULARITIES, GROUPINGS):
                    answered, queries = await service_counts(
                        ks,
                        EventFilter(),
                        granularity,
                        group_by,
                        groups=groups[group_by],
                        since=day,
                        until=day + DAY_MS,
                    )
                    expected = await raw_counts(conn, granularity, group_by, since=day, until=day + DAY_MS)
                    calls += queries
                    checked += len(expected)
                    problems += compare(f"day {day} by {granularity}, grouped by {group_by}", answered, expected)
            days = (data.until - data.since) // DAY_MS
            print(
                f"{'OK  ' if len(problems) == before else 'BAD '} whole data set, {days} days x 3 granularities x "
                f"3 groupings: {checked:,} counts compared, {calls:,} analytics queries, "
                f"{time.perf_counter() - began:,.1f} s"
            )
    finally:
        await conn.close()
    return problems


# -- main ---------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    async with throwaway_database(args.database_url, keep=args.keep) as url:
        clock = SystemClock()
        storage = await open_storage(url, clock)
        try:
            await storage.migrate()
            # Not Keystile.open: no background writer nor retention, nothing but the bulk writes below.
            ks = Keystile.create(storage, Settings(database_url=url), clock)
            print(f"database: {url}")
            t0 = time.perf_counter()
            triples = await make_keys(ks, apis=args.apis, keys=args.keys, owners=args.owners, seed=args.seed)
            apis = sorted({api for api, _, _ in triples})
            print(f"made {len(apis)} APIs and {len(triples):,} keys in {time.perf_counter() - t0:.1f} s")
            print(f"writing {args.events:,} events over the last {args.days} days, batches of {args.batch:,}")
            data = await load(
                ks,
                triples,
                apis,
                events=args.events,
                days=args.days,
                batch=args.batch,
                seed=args.seed,
                owners=args.owners,
            )
            if args.check == "none":
                return 0
            problems = await check(ks, url, data, sample=args.check_keys, full=args.check == "full", seed=args.seed)
        finally:
            await storage.close()
    for problem in problems:
        print(problem)
    print("analytics == raw events: OK" if not problems else f"analytics != raw events: {len(problems)} problems")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway one)")
    parser.add_argument("--events", type=int, default=10_000_000, help="events to write (default 10,000,000)")
    parser.add_argument("--keys", type=int, default=1000, help="keys (default 1000)")
    parser.add_argument("--apis", type=int, default=5, help="APIs (default 5)")
    parser.add_argument("--owners", type=int, default=200, help="owners (default 200)")
    parser.add_argument("--days", type=int, default=30, help="spread over the last N days (default 30)")
    parser.add_argument("--batch", type=int, default=5000, help="events per write_events batch (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--check",
        choices=["full", "sample", "none"],
        default="full",
        help="compare analytics with raw events for sampled keys and the whole data set (full, the default), "
        "sampled keys only, or not at all",
    )
    parser.add_argument("--check-keys", type=int, default=20, help="keys sampled by the check (default 20)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database (prints its URL)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

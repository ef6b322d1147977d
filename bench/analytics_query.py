"""SPEC O3: a 30-day hourly analytics query for one key, on PostgreSQL loaded with events, stays under 100 ms.

Against a database loaded by ``bench/load_events.py`` (``--database-url``), or a throwaway one it loads first
(``--events N``, dropped at the end), this times the query ``GET /v1/analytics/verifications?key_id=K
&granularity=hour&since=<30 days ago>&until=<now>`` (grouped by outcome) for the key with the most events (the
worst case: one bucket per hour and outcome), two ways, many runs each, interleaved round by round with their
baselines:

* **service**: ``AnalyticsService.verifications`` in this process, over the storage's asyncpg pool; baseline: a
  ``SELECT 1`` round trip through the same pool (what any query pays);
* **HTTP**: the same query on a real server (granian, one worker, as ``bench/http_verify.py`` starts it) through a
  keep-alive connection; baseline: ``GET /healthz`` on the same server and connection;
* **raw**: the same counts computed from the raw events (``COUNT(*) ... WHERE key_id = K GROUP BY hour,
  outcome``), a few runs: what the rollups spare (SPEC O3: "fast whatever the number of raw events").

Reported: p50 and p99 in ms of each, the ratios to the baselines, and raw / service. The answer of the service is
checked equal to the raw counts. ``EXPLAIN (ANALYZE, BUFFERS)`` of the very statement the service ran (captured
from the driver) is printed, and the run says whether it reads the rollups by an index (it exits 1 when not).

Run::

    .venv/bin/python bench/analytics_query.py --database-url postgresql://postgres@127.0.0.1:5432/<db>
    .venv/bin/python bench/analytics_query.py --events 1000000      # loads its own throwaway database first

The database is migrated first (a migration added since the load is applied) unless ``--no-migrate``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg

from http_verify import BENCH_DIR, KEYSTILE_TARGET, Server
from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import NewRootKey
from keystile.core.models import EventFilter
from keystile.service import CLI_ACTOR, Keystile
from keystile.storage import open_storage
from load_events import load as load_events
from load_events import make_keys, raw_counts, throwaway_database

HOUR_MS = 3_600_000
TARGET_MS = 100.0
ROUTE = "/v1/analytics/verifications"


@dataclass(frozen=True, slots=True)
class Timings:
    name: str
    ms: tuple[float, ...]

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    def line(self) -> str:
        return f"  {self.name:<52} p50 {self.p50:>8.2f} ms   p99 {self.p99:>8.2f} ms   ({len(self.ms)} runs)"


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def hottest_key(conn: asyncpg.Connection) -> tuple[str, int]:
    row = await conn.fetchrow(
        """SELECT key_id, SUM(count) AS n FROM event_rollups WHERE granularity = 'day' AND key_id <> ''
            GROUP BY key_id ORDER BY n DESC LIMIT 1"""
    )
    if row is None:
        raise RuntimeError("the database holds no events: load it with bench/load_events.py first")
    return row["key_id"], int(row["n"])


async def measure(url: str, *, runs: int, raw_runs: int, migrate: bool = True) -> int:
    clock = SystemClock()
    storage = await open_storage(url, clock)
    conn = await asyncpg.connect(url)
    try:
        if migrate:
            applied = await storage.migrate()
            if applied:
                print(f"applied migrations {applied}")
        ks = Keystile.create(storage, Settings(database_url=url), clock)
        events = await conn.fetchval("SELECT COUNT(*) FROM events")
        rollups = await conn.fetchval("SELECT COUNT(*) FROM event_rollups")
        key_id, key_events = await hottest_key(conn)
        now = int(time.time() * 1000)
        until = now - now % HOUR_MS + HOUR_MS
        since = until - 30 * 24 * HOUR_MS
        where = EventFilter(key_id=key_id, since=since, until=until)
        print(
            f"database: {events:,} raw events, {rollups:,} rollup rows; key {key_id}: {key_events:,} events "
            f"(the busiest); query: 30 days by hour, grouped by outcome, [{_iso(since)}, {_iso(until)})"
        )

        # The statement the service runs, captured from the driver, for EXPLAIN.
        driver = storage.driver
        captured: list[tuple[str, tuple[Any, ...]]] = []
        fetchall = driver.fetchall

        async def recording(sql: str, *args: Any) -> Any:
            captured.append((sql, args))
            return await fetchall(sql, *args)

        driver.fetchall = recording  # type: ignore[method-assign]
        try:
            series = await ks.analytics.verifications(CLI_ACTOR.principal, where, granularity="hour")
        finally:
            driver.fetchall = fetchall  # type: ignore[method-assign]
        sql, args = next((s, a) for s, a in captured if "event_rollups" in s)
        plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args))
        answered = {(c.bucket, c.group): c.count for c in series.counts}
        expected = await raw_counts(conn, "hour", "outcome", since=since, until=until, key_id=key_id)
        if answered != expected:
            raise RuntimeError(f"analytics answered {len(answered)} counts, raw events give {len(expected)}")
        print(f"answer: {len(series.counts):,} counts, equal to the raw events' counts")

        _, root = await ks.root_keys.create(CLI_ACTOR, NewRootKey(name="bench", permissions=["analytics.read"]))
        query = urlencode({"key_id": key_id, "granularity": "hour", "since": _iso(since), "until": _iso(until)})
        headers = {"Authorization": f"Bearer {root}"}
        with tempfile.TemporaryDirectory(prefix="keystile-bench-analytics-") as tmp:
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
                "KEYSTILE_DATA_DIR": tmp,
                "KEYSTILE_DATABASE_URL": url,
                "KEYSTILE_LOG_LEVEL": "warning",
                # The loaded events span the retention: the server's hourly pass must not prune them meanwhile.
                "KEYSTILE_EVENTS_RETENTION_DAYS": "36500",
            }
            server = Server("keystile", KEYSTILE_TARGET, factory=True, env=env, logs=Path(tmp) / "server.log")
            try:
                server.wait_ready(b"{}", headers)
                client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

                def get(path: str) -> bytes:
                    client.request("GET", path, headers=headers)
                    response = client.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
                    return body

                items = json.loads(get(f"{ROUTE}?{query}"))
                http_counts = {(_ms(i["ts"]), i["group"]): i["count"] for i in items["items"]}
                if http_counts != expected:
                    raise RuntimeError("the HTTP answer differs from the raw events' counts")

                async def http_call(path: str) -> None:
                    get(path)

                names = ("SELECT 1 round trip (pool)", "service: AnalyticsService.verifications",
                         "HTTP: GET /healthz", f"HTTP: GET {ROUTE}")  # fmt: skip
                calls: list[Callable[[], Awaitable[Any]]] = [
                    lambda: driver.fetchone("SELECT 1"),
                    lambda: ks.analytics.verifications(CLI_ACTOR.principal, where, granularity="hour"),
                    lambda: http_call("/healthz"),
                    lambda: http_call(f"{ROUTE}?{query}"),
                ]
                for call in calls:  # warm up
                    for _ in range(3):
                        await call()
                samples: list[list[float]] = [[] for _ in calls]
                for _ in range(runs):
                    for index, call in enumerate(calls):
                        samples[index].append(await _timed(call))
                client.close()
            finally:
                server.stop()
        raw = [
            await _timed(lambda: raw_counts(conn, "hour", "outcome", since=since, until=until, key_id=key_id))
            for _ in range(raw_runs)
        ]
        results = [Timings(name, tuple(ms)) for name, ms in zip(names, samples, strict=True)]
        results.append(Timings("raw: COUNT(*) GROUP BY hour, outcome over events", tuple(raw)))
    finally:
        await conn.close()
        await storage.close()

    select1, service, healthz, over_http, raw_timing = results
    print()
    print("EXPLAIN (ANALYZE, BUFFERS) of the statement the service runs:")
    print("\n".join(f"    {line}" for line in plan.splitlines()))
    by_index = "Index" in plan and "event_rollups" in plan
    print()
    print(f"O3 30-day hourly query for one key ({key_events:,} of its events among {events:,}); {os.cpu_count()} CPUs")
    for timing in results:
        print(timing.line())
    print(f"  service / SELECT 1 (p50)                   = {service.p50 / select1.p50:8.1f}x")
    print(f"  HTTP analytics / HTTP healthz (p50)        = {over_http.p50 / healthz.p50:8.1f}x")
    print(f"  raw events / rollups via the service (p50) = {raw_timing.p50 / service.p50:8.1f}x")
    met = over_http.p99 < TARGET_MS
    print(
        f"  HTTP p99 {over_http.p99:.2f} ms, service p99 {service.p99:.2f} ms: target < {TARGET_MS:g} ms "
        f"{'met' if met else 'MISSED'}; rollups read by an index: {'yes' if by_index else 'NO'}"
    )
    return 0 if by_index else 1


def _ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


async def run(args: argparse.Namespace) -> int:
    if args.database_url is not None:
        return await measure(args.database_url, runs=args.runs, raw_runs=args.raw_runs, migrate=not args.no_migrate)
    async with throwaway_database(None, keep=args.keep) as url:
        clock = SystemClock()
        storage = await open_storage(url, clock)
        try:
            await storage.migrate()
            ks = Keystile.create(storage, Settings(database_url=url), clock)
            triples = await make_keys(ks, apis=5, keys=1000, owners=200, seed=1)
            apis = sorted({api for api, _, _ in triples})
            await load_events(ks, triples, apis, events=args.events, days=30, batch=5000, seed=1, owners=200)
        finally:
            await storage.close()
        return await measure(url, runs=args.runs, raw_runs=args.raw_runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", help="a database loaded by bench/load_events.py")
    parser.add_argument("--events", type=int, default=1_000_000, help="without --database-url: events to load")
    parser.add_argument("--keep", action="store_true", help="without --database-url: keep the loaded database")
    parser.add_argument("--no-migrate", action="store_true", help="measure the database as it is (no migration)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs of each query (default 200)")
    parser.add_argument("--raw-runs", type=int, default=5, help="timed runs of the raw-events count (default 5)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except RuntimeError as exc:
        print(f"analytics benchmark not run: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

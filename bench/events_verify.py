"""SPEC P6: verification throughput with verification events on, as a ratio to events off; no event lost.

Two Keystile servers (granian, ASGI, one worker, as in P2) over the same database, alike but for
``KEYSTILE_EVENTS``: **on** (the default: every verification is recorded in the bounded buffer and written in
batches by the background writer, in the same process) and **off**. wrk sends both the same request as P2 (a key
with three permissions and a two-CIDR allowlist, answered ``VALID``), alternating run by run; the ratio is the
median of the per-round ratios on/off (target >= 0.9). Server CPU per request is printed as in P2.

Then the events server is stopped cleanly (SIGTERM: it flushes what it buffers) and the events stored for the key
are counted: every verification it answered must be there. wrk counts the responses it received; a request cut off
at the end of a run may still be answered and recorded after wrk stopped reading, so the check is ``stored >=
answered`` (lost = answered - stored when positive), and the surplus (at most the connections per run) is printed.
The buffer's ``dropped`` counter is read from ``/metrics`` (``keystile_events_dropped_total``) before the stop.

Storage: a SQLite file (as P2; the writer's SQLite writes run in a thread of the server's process) or, with
``--storage postgresql``, a throwaway PostgreSQL database (dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from http_verify import (
    BENCH_DIR,
    CLIENT_IP,
    KEYSTILE_TARGET,
    QUERY,
    Server,
    WrkRun,
    _check_verify_answer,
    ensure_wrk,
    prepare_database,
)
from load_events import throwaway_database

TARGET_RATIO = 0.9
_DROPPED = re.compile(r"^keystile_events_dropped_total\s+([0-9.e+]+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Result:
    on: tuple[WrkRun, ...]
    off: tuple[WrkRun, ...]
    connections: int
    duration_s: float
    storage: str
    answered: int  # verifications the events server answered, as its clients saw them
    stored: int  # events stored for the key after a clean stop
    dropped: int | None  # from /metrics; None when the build does not export it

    @property
    def ratio(self) -> float:
        return statistics.median(on.rps / off.rps for on, off in zip(self.on, self.off, strict=True))

    @property
    def cpu_ratio(self) -> float | None:
        on = [run.cpu_us for run in self.on if run.cpu_us]
        off = [run.cpu_us for run in self.off if run.cpu_us]
        if not on or not off:
            return None
        return statistics.median(off) / statistics.median(on)

    @property
    def lost(self) -> int:
        return max(0, self.answered - self.stored)

    @property
    def errors(self) -> list[str]:
        runs = (*self.on, *self.off)
        found = [f"{run.non_2xx} non-2xx answers" for run in runs if run.non_2xx]
        found += [f"socket errors: {run.socket_errors}" for run in runs if run.socket_errors]
        if self.lost:
            found.append(f"{self.lost:,} events lost: {self.answered:,} verifications answered, {self.stored:,} stored")
        if self.dropped:
            found.append(f"{self.dropped:,} events dropped by a full buffer")
        return found

    def report(self) -> str:
        lines = [
            f"P6 HTTP POST /v1/keys/verify with events on vs off ({self.storage}): granian asgi, 1 worker each; "
            f"wrk -t1 -c{self.connections} -d{self.duration_s:g}s per run, servers alternating",
            "  round     off/s  p99 ms  cpu us |      on/s  p99 ms  cpu us | ratio",
        ]
        for index, (on, off) in enumerate(zip(self.on, self.off, strict=True), 1):
            lines.append(
                f"  {index:<5} {off.rps:>9,.0f} {off.p99_ms:>7.2f} {off.cpu_us or 0:>7.0f} |"
                f" {on.rps:>9,.0f} {on.p99_ms:>7.2f} {on.cpu_us or 0:>7.0f} | {on.rps / off.rps:5.2f}"
            )
        lines.append(f"  events on / off throughput = {self.ratio:.2f} (median of rounds), target >= {TARGET_RATIO}")
        if self.cpu_ratio is not None:
            lines.append(f"  off / on server CPU per request = {self.cpu_ratio:.2f} (the writer's work included)")
        dropped = "not exported by /metrics" if self.dropped is None else f"{self.dropped:,}"
        lines.append(
            f"  events: {self.answered:,} verifications answered, {self.stored:,} stored after a clean stop "
            f"(lost {self.lost:,}; {self.stored - self.answered:+,} answered after wrk stopped reading), "
            f"dropped {dropped}"
        )
        lines += [f"  ERROR: {error}" for error in self.errors]
        return "\n".join(lines)


def _dropped(server: Server) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    match = _DROPPED.search(text)
    return int(float(match[1])) if match else None


async def _stored(url: str, key_id: str) -> int:
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM events WHERE key_id = ?", (key_id,)).fetchone()
            return int(count)
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT COUNT(*) FROM events WHERE key_id = $1", key_id))
    finally:
        await conn.close()


async def _key_id(url: str, api_id: str) -> str:
    """The id of the one key of the API prepare_database made."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return str(conn.execute("SELECT id FROM keys WHERE api_id = ?", (api_id,)).fetchone()[0])
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT id FROM keys WHERE api_id = $1", api_id))
    finally:
        await conn.close()


async def _run(*, storage: str, duration_s: float, warmup_s: float, rounds: int, connections: int, wrk: str) -> Result:
    async with AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="keystile-bench-events-"))
        directory = Path(tmp)
        if storage == "postgresql":
            url = await stack.enter_async_context(throwaway_database(None, keep=False))
        else:
            url = f"sqlite:///{directory / 'keystile.db'}"
        root, api_id, key = await prepare_database(url)
        key_id = await _key_id(url, api_id)
        body = json.dumps({"key": key, "api_id": api_id, "permissions": QUERY, "ip": CLIENT_IP})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {root}"}
        # Keys travel to wrk by environment, never through a file (bench/post.lua reads them).
        wrk_env = {**os.environ, "BENCH_BODY": body, "BENCH_AUTHORIZATION": headers["Authorization"]}
        base_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
            "KEYSTILE_DATA_DIR": str(directory),
            "KEYSTILE_DATABASE_URL": url,
            "KEYSTILE_LOG_LEVEL": "warning",
        }
        on = Server("events-on", KEYSTILE_TARGET, factory=True, env={**base_env, "KEYSTILE_EVENTS": "on"},
                    logs=directory / "on.log")  # fmt: skip
        off = Server("events-off", KEYSTILE_TARGET, factory=True, env={**base_env, "KEYSTILE_EVENTS": "off"},
                     logs=directory / "off.log")  # fmt: skip
        answered = 0
        try:
            for server in (on, off):
                _check_verify_answer(*server.wait_ready(body.encode(), headers))
            answered += 1
            warm = [server.measure(wrk, wrk_env, connections, warmup_s) for server in (on, off)]
            answered += warm[0].requests
            on_runs: list[WrkRun] = []
            off_runs: list[WrkRun] = []
            for _ in range(rounds):
                off_runs.append(off.measure(wrk, wrk_env, connections, duration_s))
                on_runs.append(on.measure(wrk, wrk_env, connections, duration_s))
                answered += on_runs[-1].requests
            _check_verify_answer(*on.request(body.encode(), headers))
            answered += 1
            dropped = _dropped(on)
        finally:
            on.stop()  # SIGTERM: a clean shutdown writes what the buffer holds
            off.stop()
        stored = await _stored(url, key_id)
    return Result(tuple(on_runs), tuple(off_runs), connections, duration_s, storage, answered, stored, dropped)


def run(
    *, storage: str = "sqlite", duration_s: float = 2.0, warmup_s: float = 2.0, rounds: int = 7, connections: int = 32
) -> Result:
    """Run P6; raises RuntimeError when wrk or a server is missing or the key does not answer VALID."""
    wrk = ensure_wrk()
    return asyncio.run(
        _run(
            storage=storage,
            duration_s=duration_s,
            warmup_s=warmup_s,
            rounds=rounds,
            connections=connections,
            wrk=wrk,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite", help="default sqlite")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measured run (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="off/on pairs (default 7)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    args = parser.parse_args(argv)
    try:
        result = run(storage=args.storage, duration_s=args.duration, rounds=args.rounds, connections=args.connections)
    except (RuntimeError, OSError) as exc:
        print(f"P6 benchmark not run: {exc}", file=sys.stderr)
        return 1
    print(result.report())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())

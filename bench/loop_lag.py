"""Tail latency: how long background work (events, rollups, ``last_used_at``) holds the serving event loop.

The server answers every request on one event loop; whatever runs on it between two requests' steps (writing a
batch of verification events with its rollups and ``last_used_at``, counting them for ``/metrics``) delays every
request waiting meanwhile. The issue's bar: never more than ~1 ms at a time.

In one process, as a server wires it (``Keystile.open``: the event writer and retention started), over a SQLite
file (default) or a throwaway PostgreSQL database (``--storage postgresql``):

* load: ``--concurrency`` tasks verify keys through ``VerificationService.verify`` (the server's entry point) as
  fast as the loop lets them, each yielding to the loop after every verification (as a request does between its
  receive and its send), so the event writer fills batches as under a heavy HTTP load;
* probe: a task that sleeps 1 ms in a loop and records how much CPU time the loop's thread spent meanwhile beyond
  that 1 ms: how long the loop was held by something else (CPU time, not wall time, so that the moments the OS
  gives the shared cores to a neighbour do not count; the wall-time overshoot is printed beside it). Also the
  time of each verification, measured by the load tasks;
* baseline, in the same run: the same load and probe with events off (``KEYSTILE_EVENTS=off``); runs alternate.

Reports the probe's overshoot (p50, p99, p99.9, max, and how many exceeded 1 ms per second) and the
verifications' latency percentiles. ``--slow`` names what held the loop for more than 1 ms (asyncio's debug mode,
which slows everything down; the numbers of that run are not comparable).

Run: ``python bench/loop_lag.py [--seconds 5] [--rounds 2] [--storage postgresql] [--slow]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from time import thread_time

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import NewApi, NewKey
from keystile.core.verify import Code, KeyCheck
from keystile.service import CLI_ACTOR, Keystile
from keystile.service.verification import OPERATOR
from keystile.storage import open_storage

PROBE_S = 0.001
TARGET_MS = 1.0
"""The issue's bar: background work never holds the loop for more than ~1 ms at a time."""
QUERY = "docs.read"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass(frozen=True, slots=True)
class Sample:
    events: bool
    seconds: float
    lags_ms: tuple[float, ...]
    verify_us: tuple[float, ...]
    walls_ms: tuple[float, ...]
    gc_ms: tuple[float, ...]

    def line(self) -> str:
        lags, verify = list(self.lags_ms), list(self.verify_us)
        over = sum(1 for lag in lags if lag > TARGET_MS) / self.seconds
        return (
            f"  events {'on ' if self.events else 'off'}  loop held: p50 {percentile(lags, 50):6.3f}  p99 "
            f"{percentile(lags, 99):6.3f}  p99.9 {percentile(lags, 99.9):6.3f}  max {max(lags):7.3f} ms,"
            f" {over:5.1f}/s over {TARGET_MS:g} ms | verify: {len(verify) / self.seconds:8,.0f}/s  p50"
            f" {percentile(verify, 50):7.1f}  p99 {percentile(verify, 99):8.1f}  p99.9 {percentile(verify, 99.9):8.1f}"
            f"  max {max(verify):9.1f} us | wall overshoot p99 {percentile(list(self.walls_ms), 99):6.2f} max"
            f" {max(self.walls_ms):7.2f} ms | gc: {len(self.gc_ms) / self.seconds:5.0f}/s, longest"
            f" {max(self.gc_ms, default=0):6.2f} ms"
        )


@dataclass(frozen=True, slots=True)
class Result:
    storage: str
    concurrency: int
    on: tuple[Sample, ...]
    off: tuple[Sample, ...]

    def _all(self, events: bool) -> tuple[list[float], list[float], float]:
        samples = self.on if events else self.off
        lags = [lag for s in samples for lag in s.lags_ms]
        verify = [v for s in samples for v in s.verify_us]
        return lags, verify, sum(s.seconds for s in samples)

    def max_lag_ms(self, events: bool) -> float:
        return max(self._all(events)[0])

    def lag_ms(self, events: bool, q: float) -> float:
        return percentile(self._all(events)[0], q)

    def verify_us(self, events: bool, q: float) -> float:
        return percentile(self._all(events)[1], q)

    def report(self) -> str:
        lines = [
            f"Loop lag ({self.storage}): {self.concurrency} verifying tasks, a 1 ms sleeper measuring how long the loop"
            " was held (its overshoot); events on and off alternating"
        ]
        for on, off in zip(self.on, self.off, strict=True):
            lines += [off.line(), on.line()]
        for events in (False, True):
            lags, verify, _ = self._all(events)
            lines.append(
                f"  all, events {'on ' if events else 'off'}: loop held p99 {percentile(lags, 99):.3f} ms, p99.9 "
                f"{percentile(lags, 99.9):.3f} ms, max {max(lags):.3f} ms; verify p50 {percentile(verify, 50):.1f} us,"
                f" p99 {percentile(verify, 99):.1f} us, p99.9 {percentile(verify, 99.9):.1f} us"
            )
        held = self.max_lag_ms(True)
        lines.append(
            f"  longest hold with events on = {held:.2f} ms (target ~{TARGET_MS:g} ms; with events off "
            f"{self.max_lag_ms(False):.2f} ms)"
        )
        return "\n".join(lines)


@asynccontextmanager
async def _database(storage: str, directory: Path) -> AsyncIterator[str]:
    if storage == "sqlite":
        yield f"sqlite:///{directory / 'keystile.db'}"
        return
    from load_events import throwaway_database

    async with throwaway_database(None, keep=False) as url:
        yield url


async def _prepare(url: str, keys: int) -> tuple[str, list[str]]:
    clock = SystemClock()
    storage = await open_storage(url, clock)
    try:
        await storage.migrate()
        ks = Keystile.create(storage, Settings(database_url=url), clock)
        api = await ks.apis.create(CLI_ACTOR, NewApi(name="lag"))
        created = await ks.keys.create_many(CLI_ACTOR, api.id, [NewKey(permissions=["docs.read"])] * keys)
        await ks.close()
        return api.id, [plain for _, plain in created]
    finally:
        await storage.close()


async def _sample(url: str, api_id: str, keys: list[str], *, events: bool, seconds: float, tasks: int) -> Sample:
    settings = Settings(database_url=url, events=events)
    ks = await Keystile.open(settings, retention=False, server=True)
    try:
        verification = ks.verification
        checks = [KeyCheck(key, api_id=api_id, permissions=QUERY) for key in keys]
        for check in checks:  # warm the cache: the lag of cache misses is not what this measures
            if (await verification.verify(OPERATOR, check)).code != Code.VALID:
                raise RuntimeError("a key did not verify VALID")
        # What was made so far (modules, the services, the cache) lives as long as the run: out of the garbage
        # collector's sight, as `keystile serve` puts what its start made (keystile.server.app.app_from_env).
        gc.collect()
        gc.freeze()
        lags: list[float] = []
        walls: list[float] = []
        verify_us: list[float] = []
        deadline = time.perf_counter() + seconds
        clock = time.perf_counter

        async def probe() -> None:
            # The loop thread's CPU time over the sleep, less the sleep: what ran on the loop meanwhile beyond
            # the 1 ms asked for. Wall time would also count the moments the OS gave the CPU to a neighbour (this
            # machine's 2 cores are shared): those are not the loop being held, and are reported apart.
            while (start := clock()) < deadline:
                cpu = thread_time()
                await asyncio.sleep(PROBE_S)
                lags.append((thread_time() - cpu - PROBE_S) * 1000)
                walls.append((clock() - start - PROBE_S) * 1000)

        async def load(offset: int) -> None:
            i = offset
            while clock() < deadline:
                check = checks[i % len(checks)]
                i += 1
                start = clock()
                await verification.verify(OPERATOR, check)
                verify_us.append((clock() - start) * 1e6)
                await asyncio.sleep(0)

        gc_pauses: list[float] = []
        gc_started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started[0] = thread_time()
            elif info["generation"] >= 0:
                gc_pauses.append((thread_time() - gc_started[0]) * 1000)

        gc.callbacks.append(on_gc)
        try:
            await asyncio.gather(probe(), *(load(n * 97) for n in range(tasks)))
        finally:
            gc.callbacks.remove(on_gc)
        return Sample(events, seconds, tuple(lags), tuple(verify_us), tuple(walls), tuple(gc_pauses))
    finally:
        await ks.close()
        gc.unfreeze()


def run(
    *,
    storage: str = "sqlite",
    seconds: float = 5.0,
    rounds: int = 2,
    tasks: int = 8,
    keys: int = 1000,
    slow: bool = False,
) -> Result:
    async def main() -> Result:
        if slow:
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = TARGET_MS / 1000
            logging.basicConfig(level=logging.WARNING, format="%(message)s")
        with tempfile.TemporaryDirectory(prefix="keystile-bench-lag-") as tmp:
            async with _database(storage, Path(tmp)) as url:
                api_id, plain = await _prepare(url, keys)
                on: list[Sample] = []
                off: list[Sample] = []
                for _ in range(rounds):
                    off.append(await _sample(url, api_id, plain, events=False, seconds=seconds, tasks=tasks))
                    on.append(await _sample(url, api_id, plain, events=True, seconds=seconds, tasks=tasks))
                return Result(storage, tasks, tuple(on), tuple(off))

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per sample (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (default 2)")
    parser.add_argument("--tasks", type=int, default=8, help="verifying tasks (default 8)")
    parser.add_argument("--slow", action="store_true", help="log what holds the loop > 1 ms (asyncio debug mode)")
    args = parser.parse_args(argv)
    result = run(storage=args.storage, seconds=args.seconds, rounds=args.rounds, tasks=args.tasks, slow=args.slow)
    print(result.report())
    print(f"  median of all verifications: {statistics.median([v for s in result.on for v in s.verify_us]):.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a Redis call costs this process through redis-py's asyncio client and through Keystile's own connection
(``keystile.redis.connection``): why the hot path speaks RESP through hiredis itself (docs/dependencies.md).

A redis-server of the benchmark's own on a free port (no persistence, stopped at the end), one event loop (uvloop,
as ``keystile serve`` runs, unless ``--loop asyncio``), and the same commands through both clients:

* ``PING``;
* ``EVALSHA`` of Keystile's ``refund.lua`` on one bucket key that does not exist (the script reads Redis's clock
  and the key), with the same arguments on both sides (the deadline far in the future);

each two ways: **sequential**, one call in flight at a time (what one call costs), and **concurrent**, ``C``
callers at once each making its calls one after the other (as ``C`` requests a busy server has in flight). The
samples of the two clients alternate, round after round. Per call: this process's CPU time (``process_time``:
redis-server runs in its own process, and its work is the same for both clients) and the wall time. The ratios
redis-py / Keystile use the best sample of each side, as the other benchmarks do (noise only adds time).

redis-py parses with hiredis here too when it is installed (it is a Keystile dependency); the difference is the
client around the parser: redis-py's command building, response callbacks, connection pool and per-call
locking, against one connection that packs a batch in one write and hands replies straight to futures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
import redis.utils

from keystile.core.clock import SystemClock
from keystile.redis.connection import RedisConnection
from keystile.redis.scripts import Script

START_TIMEOUT_S = 10.0
BUCKET = "bench:bucket"
ARGS = (10, 100_000, 1)  # refund.lua: limit, interval (us), cost
FAR_DEADLINE_US = 2**62  # refund.lua's last argument, past which it does nothing: never, here


@dataclass(frozen=True, slots=True)
class Sample:
    cpu_ns: float
    wall_ns: float


@dataclass(slots=True)
class Side:
    """One client's samples of one case."""

    samples: list[Sample]

    @property
    def cpu(self) -> float:
        return min(sample.cpu_ns for sample in self.samples)

    @property
    def wall(self) -> float:
        return min(sample.wall_ns for sample in self.samples)


class OwnRedis:
    """A redis-server on a free port, without persistence, in a temporary directory."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix="keystile-bench-redis-")
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    self.version = str(client.info("server")["redis_version"])
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        self.stop()
                        raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                    time.sleep(0.01)
        finally:
            client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._dir.cleanup()


async def sample(call: Callable[[], Awaitable[object]], calls: int, concurrency: int) -> Sample:
    """``calls`` calls in all, by ``concurrency`` callers at once, each awaiting its calls one after the other."""
    per_caller = calls // concurrency

    async def caller() -> None:
        for _ in range(per_caller):
            await call()

    gc.collect()
    gc.disable()
    try:
        cpu, wall = time.process_time_ns(), time.perf_counter_ns()
        if concurrency == 1:
            await caller()
        else:
            await asyncio.gather(*(caller() for _ in range(concurrency)))
        cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
    finally:
        gc.enable()
    made = per_caller * concurrency
    return Sample(cpu / made, wall / made)


async def bench(url: str, calls: int, rounds: int, concurrency: int) -> list[tuple[str, Side, Side]]:
    script = Script("refund")
    plain = aioredis.Redis.from_url(url)
    own = RedisConnection(url, "bench:", SystemClock(), timeout_s=5.0)
    try:
        await plain.script_load(script.source)
        cases: list[tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]], int]] = []
        for label, width in (("sequential", 1), (f"{concurrency} concurrent", concurrency)):
            cases.append((f"PING, {label}", plain.ping, own.ping, width))
            cases.append(
                (
                    f"EVALSHA refund.lua, {label}",
                    lambda: plain.evalsha(script.sha, 1, BUCKET, *ARGS, FAR_DEADLINE_US),
                    lambda: own.call(script, [BUCKET], ARGS),
                    width,
                )
            )
        results: list[tuple[str, Side, Side]] = []
        for name, redis_py, keystile, width in cases:
            for warm in (redis_py, keystile):  # connections opened (redis-py's pool filled), scripts cached
                await sample(warm, min(calls, 50 * width), width)
            sides = (Side([]), Side([]))
            for index in range(rounds):
                order = (0, 1) if index % 2 == 0 else (1, 0)  # neither client always goes first
                for which in order:
                    sides[which].samples.append(await sample((redis_py, keystile)[which], calls, width))
            results.append((name, *sides))
        return results
    finally:
        await own.close()
        await plain.aclose()


def report(results: list[tuple[str, Side, Side]]) -> str:
    lines = [
        f"  {'case':<36} {'redis-py CPU':>13} {'keystile CPU':>13} {'ratio':>6} |"
        f" {'redis-py wall':>14} {'keystile wall':>14} {'ratio':>6}"
    ]
    for name, redis_py, keystile in results:
        lines.append(
            f"  {name:<36} {redis_py.cpu / 1000:>10.1f} us {keystile.cpu / 1000:>10.1f} us"
            f" {redis_py.cpu / keystile.cpu:>5.1f}x | {redis_py.wall / 1000:>11.1f} us"
            f" {keystile.wall / 1000:>11.1f} us {redis_py.wall / keystile.wall:>5.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=6400, help="calls per sample (default 6400)")
    parser.add_argument("--rounds", type=int, default=7, help="samples of each client per case (default 7)")
    parser.add_argument("--concurrency", type=int, default=32, help="callers at once (default 32, as wrk's -c32)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server not found (Debian: apt-get install redis-server)", file=sys.stderr)
        return 1
    server = OwnRedis()
    try:
        print(
            f"Redis client cost per call: redis-py {redis.__version__} asyncio (hiredis parser:"
            f" {redis.utils.HIREDIS_AVAILABLE}) vs keystile.redis.connection; redis-server {server.version} on"
            f" 127.0.0.1:{server.port}; Python {platform.python_version()}, {args.loop};"
            f" {args.calls:,} calls per sample, {args.rounds} samples each, best sample"
        )
        run = bench(server.url, args.calls, args.rounds, args.concurrency)
        if args.loop == "uvloop":
            import uvloop

            results = uvloop.run(run)
        else:
            results = asyncio.run(run)
    finally:
        server.stop()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

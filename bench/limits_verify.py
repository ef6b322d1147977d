"""SPEC P5: verification throughput with Redis rate limits and credits on, as a ratio to the same without them.

One Keystile server (granian, ASGI, one worker, as in P2) configured with Redis (``KEYSTILE_REDIS_URL``, a
prefix of its own) and ``KEYSTILE_CREDITS_MODE=redis``, and two keys in one API, alike but for their limits:

* plain: three permissions, a two-CIDR allowlist, no rate limit, unlimited credits: nothing to spend;
* limited: the same, plus a rate limit (10^9 per second, so it never refuses) and 10^12 credits: every
  verification runs the atomic Redis script that spends both (one round trip, shared between concurrent requests).

wrk sends the same request to the same server, alternating the two keys run by run (the request body is all
that differs), and the ratio is the median of the per-round ratios limited/plain (target >= 0.7). A second server
with ``KEYSTILE_CREDITS_MODE=database`` (rate limits in Redis, credits in the database) is measured as context.

Needs Redis (``KEYSTILE_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/0``); every key the run writes is
under a fresh prefix and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from http_verify import (
    ALLOWLIST,
    BENCH_DIR,
    CLIENT_IP,
    KEYSTILE_TARGET,
    PERMISSIONS,
    QUERY,
    Server,
    WrkRun,
    _check_verify_answer,
    ensure_wrk,
)
from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import NewApi, NewCredits, NewKey
from keystile.core.models import RateLimit
from keystile.service import CLI_ACTOR, Keystile
from keystile.storage import open_storage

REDIS_URL = os.environ.get("KEYSTILE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TARGET_RATIO = 0.7


async def prepare_database(url: str) -> tuple[str, str, str, str]:
    """Migrate, bootstrap a root key, create an API with a plain and a limited key: (root, api, plain, limited)."""
    clock = SystemClock()
    storage = await open_storage(url, clock)
    try:
        await storage.migrate()
        ks = Keystile.create(storage, Settings(database_url=url), clock)
        created = await ks.root_keys.bootstrap()
        if created is None:
            raise RuntimeError(f"{url} already has a root key; the benchmark needs a fresh database")
        _, root = created
        api = await ks.apis.create(CLI_ACTOR, NewApi(name="bench-limits"))
        plain = NewKey(name="plain", permissions=PERMISSIONS, ip_allowlist=ALLOWLIST)
        limited = NewKey(
            name="limited",
            permissions=PERMISSIONS,
            ip_allowlist=ALLOWLIST,
            ratelimits=[RateLimit(name="requests", limit=10**9, duration_ms=1000)],
            credits=NewCredits(remaining=10**12),
        )
        _, plain_key = await ks.keys.create(CLI_ACTOR, api.id, plain)
        _, limited_key = await ks.keys.create(CLI_ACTOR, api.id, limited)
        return root, api.id, plain_key, limited_key
    finally:
        await storage.close()


async def _forget(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass(frozen=True, slots=True)
class RedisUse:
    """What Redis spent on one limited run: its CPU per verification (it shares the machine with the server and
    wrk, so it counts against the ratio), and its EVALSHA calls (one per batch of verifications)."""

    cpu_us: float
    calls_per_request: float
    usec_per_call: float


class RedisMeter:
    """Reads Redis's CPU time and EVALSHA counters (INFO) before and after a run."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url)

    def snapshot(self) -> tuple[float, int, int]:
        cpu = self._client.info("cpu")
        calls = self._client.info("commandstats").get("cmdstat_evalsha", {})
        return cpu["used_cpu_sys"] + cpu["used_cpu_user"], calls.get("calls", 0), calls.get("usec", 0)

    def since(self, before: tuple[float, int, int], requests: int) -> RedisUse:
        cpu, calls, usec = (after - then for after, then in zip(self.snapshot(), before, strict=True))
        return RedisUse(cpu * 1e6 / max(1, requests), calls / max(1, requests), usec / max(1, calls))

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class Result:
    plain: tuple[WrkRun, ...]
    limited: tuple[WrkRun, ...]
    database_credits: tuple[WrkRun, ...]
    connections: int
    duration_s: float
    redis: tuple[RedisUse, ...] = ()

    @staticmethod
    def _ratio(top: tuple[WrkRun, ...], bottom: tuple[WrkRun, ...]) -> float:
        return statistics.median(a.rps / b.rps for a, b in zip(top, bottom, strict=True))

    @property
    def ratio(self) -> float:
        return self._ratio(self.limited, self.plain)

    @property
    def database_ratio(self) -> float:
        return self._ratio(self.database_credits, self.plain)

    @property
    def cpu_ratio(self) -> float | None:
        plain = [run.cpu_us for run in self.plain if run.cpu_us]
        limited = [run.cpu_us for run in self.limited if run.cpu_us]
        if not plain or not limited:
            return None
        return statistics.median(plain) / statistics.median(limited)

    @property
    def errors(self) -> list[str]:
        runs = (*self.plain, *self.limited, *self.database_credits)
        return [f"{run.non_2xx} non-2xx answers" for run in runs if run.non_2xx] + [
            f"socket errors: {run.socket_errors}" for run in runs if run.socket_errors
        ]

    def report(self) -> str:
        lines = [
            f"P5 HTTP POST /v1/keys/verify with Redis limits and credits vs without: granian asgi, 1 worker; "
            f"wrk -t1 -c{self.connections} -d{self.duration_s:g}s per run, keys alternating",
            "  round    plain/s  p99 ms  cpu us |  limited/s  p99 ms  cpu us | ratio | db-credits/s  ratio",
        ]
        rounds = zip(self.plain, self.limited, self.database_credits, strict=True)
        for index, (plain, limited, database) in enumerate(rounds, 1):
            lines.append(
                f"  {index:<5} {plain.rps:>10,.0f} {plain.p99_ms:>7.2f} {plain.cpu_us or 0:>7.0f} |"
                f" {limited.rps:>10,.0f} {limited.p99_ms:>7.2f} {limited.cpu_us or 0:>7.0f} |"
                f" {limited.rps / plain.rps:5.2f} | {database.rps:>12,.0f}  {database.rps / plain.rps:5.2f}"
            )
        lines.append(f"  limited / plain throughput = {self.ratio:.2f} (median of rounds), target >= {TARGET_RATIO}")
        if self.cpu_ratio is not None:
            lines.append(f"  plain / limited server CPU per request = {self.cpu_ratio:.2f}")
        if self.redis:
            cpu = statistics.median(use.cpu_us for use in self.redis)
            per_call = statistics.median(use.calls_per_request for use in self.redis)
            usec = statistics.median(use.usec_per_call for use in self.redis)
            lines.append(
                f"  Redis, on the same machine: {cpu:.1f} us CPU per limited verification; one EVALSHA per"
                f" {1 / per_call if per_call else 0:.1f} verifications, {usec:.0f} us each (median of rounds)"
            )
        lines.append(
            f"  context: Redis limits with credits in the database / plain = {self.database_ratio:.2f}"
            " (each verification also writes the balance in the database)"
        )
        lines += [f"  ERROR: {error}" for error in self.errors]
        return "\n".join(lines)


def run(*, duration_s: float = 2.0, warmup_s: float = 2.0, rounds: int = 5, connections: int = 32) -> Result:
    """Run P5; raises RuntimeError when Redis, wrk or a server is missing or a key does not answer VALID."""
    wrk = ensure_wrk()
    prefix = f"keystile-bench:{secrets.token_hex(4)}:"
    with tempfile.TemporaryDirectory(prefix="keystile-bench-limits-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'keystile.db'}"
        root, api_id, plain_key, limited_key = asyncio.run(prepare_database(url))
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {root}"}

        def body(key: str) -> str:
            return json.dumps({"key": key, "api_id": api_id, "permissions": QUERY, "ip": CLIENT_IP})

        def wrk_env(key: str) -> dict[str, str]:
            # Keys travel to wrk by environment, never through a file (bench/post.lua reads them).
            return {**os.environ, "BENCH_BODY": body(key), "BENCH_AUTHORIZATION": headers["Authorization"]}

        base_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
            "KEYSTILE_DATA_DIR": str(directory),
            "KEYSTILE_DATABASE_URL": url,
            "KEYSTILE_LOG_LEVEL": "warning",
            "KEYSTILE_REDIS_URL": REDIS_URL,
            "KEYSTILE_REDIS_PREFIX": prefix,
        }
        servers: list[Server] = []
        try:
            redis_mode = Server(
                "redis-credits",
                KEYSTILE_TARGET,
                factory=True,
                env={**base_env, "KEYSTILE_CREDITS_MODE": "redis"},
                logs=directory / "redis.log",
            )
            servers.append(redis_mode)
            database_mode = Server(
                "database-credits",
                KEYSTILE_TARGET,
                factory=True,
                env={**base_env, "KEYSTILE_CREDITS_MODE": "database"},
                logs=directory / "database.log",
            )
            servers.append(database_mode)
            for server in servers:
                for key in (plain_key, limited_key):
                    _check_verify_answer(*server.wait_ready(body(key).encode(), headers))
                server.measure(wrk, wrk_env(limited_key), connections, warmup_s)
            redis_mode.measure(wrk, wrk_env(plain_key), connections, warmup_s)
            plain: list[WrkRun] = []
            limited: list[WrkRun] = []
            database: list[WrkRun] = []
            redis_use: list[RedisUse] = []
            meter = RedisMeter(REDIS_URL)
            try:
                for _ in range(rounds):
                    plain.append(redis_mode.measure(wrk, wrk_env(plain_key), connections, duration_s))
                    before = meter.snapshot()
                    limited.append(redis_mode.measure(wrk, wrk_env(limited_key), connections, duration_s))
                    redis_use.append(meter.since(before, limited[-1].requests))
                    database.append(database_mode.measure(wrk, wrk_env(limited_key), connections, duration_s))
            finally:
                meter.close()
            for server in servers:
                _check_verify_answer(*server.request(body(limited_key).encode(), headers))
        finally:
            for server in servers:
                server.stop()
            asyncio.run(_forget(prefix))
    return Result(tuple(plain), tuple(limited), tuple(database), connections, duration_s, tuple(redis_use))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measured run (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="plain/limited pairs (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    args = parser.parse_args(argv)
    try:
        result = run(duration_s=args.duration, rounds=args.rounds, connections=args.connections)
    except RuntimeError as exc:
        print(f"P5 benchmark not run: {exc}", file=sys.stderr)
        return 1
    print(result.report())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())

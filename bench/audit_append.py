"""What the audit hash chain adds to a management transaction: appending a chained entry (one statement that
follows and locks the head, hashes in the database and inserts) against inserting the same entry unchained (one
INSERT, as before the chain), each in its own transaction, interleaved, on a SQLite file and on a throwaway
PostgreSQL database.

    .venv/bin/python bench/audit_append.py [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]

The admin URL defaults to ``KEYSTILE_BENCH_PG_DSN``, as the other benchmarks' throwaway databases do.

Prints ns per transaction and the ratio chained / unchained (noise only ever adds time: the minimum is compared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

from _timing import Timing, measure_async
from keystile.core.clock import SystemClock
from keystile.core.ids import new_id
from keystile.core.models import AuditEntry
from keystile.storage import SqlStorage, open_storage

TRANSACTIONS = 200
REPEATS = 7
_PLAIN = {
    "sqlite": """CREATE TABLE bench_audit_plain (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        ts INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, ip TEXT,
        user_agent TEXT, changes TEXT NOT NULL DEFAULT '{}')""",
    "postgresql": """CREATE TABLE bench_audit_plain (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT COLLATE "C" NOT NULL UNIQUE, ts BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        target TEXT NOT NULL, ip TEXT, user_agent TEXT, changes JSONB NOT NULL DEFAULT '{}')""",
}


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        new_id("aud", 1_800_000_000_000 + i), 1_800_000_000_000 + i, "rk_0123456789", "key.update",
        "key_0123456789", "203.0.113.7", "keystile-bench/1.0", {"name": [None, f"key {i}"], "enabled": [True, False]},
    )  # fmt: skip


async def _compare(storage: SqlStorage) -> tuple[Timing, Timing]:
    driver = storage.driver
    await driver.execute(_PLAIN[driver.dialect])
    counter = iter(range(10**9))

    async def plain() -> None:
        for _ in range(TRANSACTIONS):
            entry = _entry(next(counter))
            async with driver.transaction() as tx:
                await tx.execute(
                    "INSERT INTO bench_audit_plain (id, ts, actor, action, target, ip, user_agent, changes)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    entry.id, entry.ts, entry.actor, entry.action, entry.target, entry.ip, entry.user_agent,
                    '{"name": [null, "key"], "enabled": [true, false]}',
                )  # fmt: skip

    async def chained() -> None:
        for _ in range(TRANSACTIONS):
            async with storage.transaction() as tx:
                await tx.append_audit(_entry(next(counter)))

    plain_samples: list[float] = []
    chained_samples: list[float] = []
    for _ in range(REPEATS):  # interleaved: a noisy moment hits both
        plain_samples += (await measure_async("unchained", plain, TRANSACTIONS, passes=1, repeats=1)).samples_ns
        chained_samples += (await measure_async("chained", chained, TRANSACTIONS, passes=1, repeats=1)).samples_ns
    calls = TRANSACTIONS * REPEATS
    return (
        Timing("unchained INSERT, one per transaction", calls, tuple(plain_samples)),
        Timing("chained append, one per transaction", calls, tuple(chained_samples)),
    )


async def _report(label: str, storage: SqlStorage) -> None:
    await storage.migrate()
    plain, chained = await _compare(storage)
    print(f"-- {label}")
    print(plain.line())
    print(chained.line())
    print(f"{'ratio chained / unchained (min)':<44} {chained.best / plain.best:>10.2f}x")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get("KEYSTILE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    clock = SystemClock()
    with tempfile.TemporaryDirectory() as tmp:
        storage = await open_storage(f"sqlite:///{Path(tmp) / 'bench.db'}", clock)
        try:
            await _report("SQLite file", storage)
        finally:
            await storage.close()
    if args.no_pg:
        return 0
    import asyncpg

    name = f"keystile_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
        storage = await open_storage(url, clock)
        try:
            await _report("PostgreSQL", storage)
        finally:
            await storage.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

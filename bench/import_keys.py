"""Import 1,000,000 keys by digest into a throwaway PostgreSQL database through the import service (SPEC R4, P4).

The keys are made up (``bench-<i>-<random>``) and hashed before the clock starts; the timed part is what
``keystile keys import`` does per batch of a file: one :meth:`ImportService.import_keys` call of ``--batch``
entries (validation, the lookup of the digests already held, the bulk ``COPY`` of the new rows and the audit
entry, in one transaction). Afterwards the number of keys is checked and a few of them are verified by their
plain text. Prints the time, keys/s and the ratio to SPEC P4's bar (1,000,000 keys in under 2 minutes).

Run::

    .venv/bin/python bench/import_keys.py                        # 1,000,000 keys, batches of 1,000
    .venv/bin/python bench/import_keys.py --keys 100000 --variant sha256_base64

Without ``--database-url`` a throwaway database is made on ``KEYSTILE_BENCH_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import sys
import time

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import HashVariant, ImportedKey, KeyHash, NewApi
from keystile.core.verify import Code
from keystile.service import CLI_ACTOR, Keystile
from keystile.storage import open_storage
from load_events import throwaway_database

TARGET_S = 120.0
"""SPEC P4: 1,000,000 keys imported in under 2 minutes."""
TARGET_KEYS = 1_000_000


def made_up(count: int, variant: HashVariant) -> tuple[list[str], list[str]]:
    """``count`` plain keys and their SHA-256 digests as an export would give them."""
    tag = secrets.token_hex(4)
    keys = [f"bench-{i}-{tag}" for i in range(count)]
    digests = [hashlib.sha256(key.encode()).digest() for key in keys]
    if variant == "sha256_hex":
        return keys, [digest.hex() for digest in digests]
    return keys, [base64.b64encode(digest).decode() for digest in digests]


async def run(args: argparse.Namespace) -> int:
    variant: HashVariant = args.variant
    t0 = time.perf_counter()
    keys, digests = made_up(args.keys, variant)
    print(f"made {args.keys:,} keys and their {variant} digests in {time.perf_counter() - t0:.1f} s (not timed)")
    async with throwaway_database(args.database_url, keep=args.keep) as url:
        clock = SystemClock()
        storage = await open_storage(url, clock)
        try:
            await storage.migrate()
            ks = Keystile.create(storage, Settings(database_url=url), clock)
            api = await ks.apis.create(CLI_ACTOR, NewApi(name="imported"))
            print(f"database: {url}; importing in batches of {args.batch:,}, {args.concurrency} at a time")
            imported = 0
            starts = iter(range(0, args.keys, args.batch))
            started = time.perf_counter()

            async def worker() -> None:
                # Each worker imports one batch at a time, in a transaction of its own; with more than one, the
                # database writes one batch while Python prepares the next.
                nonlocal imported
                for start in starts:
                    batch = [ImportedKey(hash=KeyHash(d, variant)) for d in digests[start : start + args.batch]]
                    result = await ks.imports.import_keys(CLI_ACTOR, api.id, batch)
                    imported += result.imported
                    if args.progress and (start // args.batch) % 100 == 99:
                        elapsed = time.perf_counter() - started
                        print(f"  {imported:,} keys in {elapsed:.1f} s ({imported / elapsed:,.0f} keys/s)")

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            elapsed = time.perf_counter() - started
            count = await storage.count_keys(api.id)
            sample = [keys[0], keys[len(keys) // 2], keys[-1]]
            codes = [(await ks.ctx.verifier.verify(key, api_id=api.id)).code for key in sample]
        finally:
            await storage.close()
    rate = imported / elapsed
    print(f"imported {imported:,} keys in {elapsed:.1f} s: {rate:,.0f} keys/s")
    projected = TARGET_KEYS / rate
    print(
        f"P4 import: {TARGET_KEYS:,} keys would take {projected:.1f} s at this rate; bar {TARGET_S:.0f} s "
        f"(ratio {projected / TARGET_S:.2f}, {'met' if projected < TARGET_S else 'MISSED'})"
    )
    ok = count == args.keys == imported and all(code == Code.VALID for code in codes)
    print(f"check: {count:,} keys stored, sample verifies {codes}: {'OK' if ok else 'WRONG'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway one)")
    parser.add_argument("--keys", type=int, default=TARGET_KEYS, help="keys to import (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=1000, help="keys per import call (1 to 1,000; default 1,000)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="batches in flight at once, each its own transaction (default 1)"
    )
    parser.add_argument("--variant", choices=["sha256_hex", "sha256_base64"], default="sha256_hex")
    parser.add_argument("--progress", action="store_true", help="print the rate every 100 batches")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database (prints its URL)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

"""SPEC P7: resident memory per cached key (at most 1 KiB with <= 256 bytes of meta; 1,000,000 keys under 1 GiB).

N keys (default 100,000; ``--keys 1000000`` for the SPEC's million) are imported by their plain text into one API
of a migrated SQLite file (``--storage postgresql``: a throwaway PostgreSQL database), each with a meta of
190-256 bytes of JSON, a name and two permissions. Then every key is verified once, which is what fills the
cache, and the growth of resident memory is divided by the number of keys cached.

* ``in-process`` (default): through :class:`keystile.service.verification.VerificationService`, the entry point
  the server calls, with the answer encoded as ``POST /v1/keys/verify`` encodes it (kept on the cache entry, as
  the server does); events off, so the event buffer does not count. RSS from ``/proc/self/statm`` before and
  after the verifications, after a garbage collection; ``--tracemalloc`` adds Python's own count of the bytes
  allocated, by file and line, and by type (slower: the fill then takes several times longer).
* ``--http``: a real server (granian, one worker, ``app_from_env``, events on, default settings but the cache
  size) answers ``POST /v1/keys/verify`` for every key, over several keep-alive connections; the RSS of the
  server's processes is read from ``/proc`` before and after (after the event writer has caught up).

The baseline, measured in the same run: the RSS of the same process before the fill (everything loaded and
warmed by verifying a first key), and the bytes of the keys' digests alone as the floor any cache pays
(a 32-byte ``bytes`` in a dict: ~100 bytes).

Run: ``python bench/memory_per_key.py [--keys N] [--http] [--tracemalloc] [--storage postgresql]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import ImportedKey, NewApi, NewKey
from keystile.core.verify import Code, KeyCheck
from keystile.service import CLI_ACTOR, Keystile
from keystile.service.verification import OPERATOR
from keystile.storage import open_storage

TARGET_BYTES = 1024
"""SPEC P7: at most 1 KiB of resident memory per cached key."""
PERMISSIONS = ("docs.read", "docs.write")
QUERY = "docs.read"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_IMPORT_BATCH = 1000
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Result:
    mode: str
    keys: int
    meta_bytes: tuple[int, int]
    rss_before: int
    rss_after: int
    cached: int
    seconds: float
    digest_floor: float
    breakdown: str = ""

    @property
    def per_key(self) -> float:
        return (self.rss_after - self.rss_before) / max(1, self.cached)

    @property
    def met(self) -> bool:
        return self.per_key <= TARGET_BYTES

    def report(self) -> str:
        lines = [
            f"P7 memory per cached key ({self.mode}): {self.keys:,} keys, meta {self.meta_bytes[0]}-"
            f"{self.meta_bytes[1]} bytes of JSON, two permissions, each verified once ({self.seconds:.1f} s)",
            f"  RSS before the fill {self.rss_before / 2**20:8.1f} MiB, after {self.rss_after / 2**20:8.1f} MiB,"
            f" {self.cached:,} keys cached",
            f"  RSS growth per cached key   = {self.per_key:8.0f} bytes  (target <= {TARGET_BYTES})"
            f"  {'met' if self.met else 'MISSED'}",
            f"  context: a dict of the 32-byte digests alone = {self.digest_floor:.0f} bytes per key",
        ]
        if self.breakdown:
            lines.append(self.breakdown)
        return "\n".join(lines)


def rss_of(pid: int | str = "self") -> int:
    """Resident set size in bytes (``/proc/<pid>/statm``)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def make_keys(count: int, seed: int = 7) -> list[str]:
    """``count`` plain keys, random as a provider's would be (the same ones for the same seed: the process that
    measures makes them again rather than being handed them)."""
    rng = random.Random(seed)
    return ["mem_" + "".join(rng.choices(_ALPHABET, k=32)) for _ in range(count)]


def make_meta(i: int, rng: random.Random) -> dict[str, object]:
    """A meta of 190-256 bytes of JSON."""
    return {
        "customer": f"cus_{i:09d}",
        "plan": rng.choice(["free", "pro", "team", "enterprise"]),
        "region": rng.choice(["eu-west-1", "us-east-1", "ap-south-1"]),
        "seats": rng.randint(1, 500),
        "features": rng.sample(["search", "export", "sso", "audit", "webhooks", "beta"], 3),
        "note": "".join(rng.choices(_ALPHABET, k=rng.randint(70, 120))),
    }


def _meta_size(meta: dict[str, object]) -> int:
    return len(json.dumps(meta, separators=(",", ":")))


@asynccontextmanager
async def _database(storage: str, directory: Path) -> AsyncIterator[str]:
    if storage == "sqlite":
        yield f"sqlite:///{directory / 'keystile.db'}"
        return
    from load_events import throwaway_database

    async with throwaway_database(None, keep=False) as url:
        yield url


async def fill_database(url: str, keys: list[str]) -> tuple[str, str, tuple[int, int]]:
    """Migrate, bootstrap a root key, import the keys (each with a meta); returns (root key, api id, the smallest
    and largest meta in bytes of JSON)."""
    clock = SystemClock()
    storage = await open_storage(url, clock)
    rng = random.Random(11)
    sizes: list[int] = []
    try:
        await storage.migrate()
        ks = Keystile.create(storage, Settings(database_url=url), clock)
        created = await ks.root_keys.bootstrap()
        if created is None:
            raise RuntimeError("the database already has a root key")
        api = await ks.apis.create(CLI_ACTOR, NewApi(name="memory"))
        for start in range(0, len(keys), _IMPORT_BATCH):
            batch = []
            for i in range(start, min(start + _IMPORT_BATCH, len(keys))):
                meta = make_meta(i, rng)
                sizes.append(_meta_size(meta))
                spec = NewKey(name=f"key {i}", meta=meta, permissions=PERMISSIONS)
                batch.append(ImportedKey(spec=spec, key=keys[i]))
            await ks.imports.import_keys(CLI_ACTOR, api.id, batch)
        await ks.close()
        return created[1], api.id, (min(sizes), max(sizes))
    finally:
        await storage.close()


def _digest_floor(count: int) -> float:
    """Bytes per key of a dict holding nothing but 32-byte digests (``object()`` values shared)."""
    import hashlib

    gc.collect()
    before = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
    if before is None:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    else:
        base = before
    value = object()
    table = {hashlib.sha256(b"%d" % i).digest(): value for i in range(count)}
    size = tracemalloc.get_traced_memory()[0] - base
    del table
    if before is None:
        tracemalloc.stop()
    return size / count


def _breakdown(snapshot_before: tracemalloc.Snapshot, snapshot_after: tracemalloc.Snapshot, count: int) -> str:
    lines = ["  tracemalloc: bytes per cached key allocated by (top 15 lines)"]
    for stat in snapshot_after.compare_to(snapshot_before, "lineno")[:15]:
        frame = stat.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        lines.append(f"    {stat.size_diff / count:8.1f} B  {stat.count_diff / count:5.2f} blocks  {where}")
    return "\n".join(lines)


def _type_census(count: int, before: dict[str, tuple[int, int]]) -> str:
    after = _types()
    rows = []
    for name, (number, size) in after.items():
        old_number, old_size = before.get(name, (0, 0))
        if size - old_size > count * 4:
            rows.append((size - old_size, number - old_number, name))
    rows.sort(reverse=True)
    lines = ["  objects by type (gc-tracked and their direct sizes; bytes and objects per cached key)"]
    lines += [f"    {size / count:8.1f} B  {number / count:5.2f} objects  {name}" for size, number, name in rows[:12]]
    return "\n".join(lines)


def _types() -> dict[str, tuple[int, int]]:
    """Count and ``sys.getsizeof`` of gc-tracked objects and of the str/bytes/int they refer to, by type."""
    seen: set[int] = set()
    out: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        for item in (obj, *gc.get_referents(obj)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            name = type(item).__name__
            slot = out.setdefault(name, [0, 0])
            slot[0] += 1
            slot[1] += sys.getsizeof(item)
    return {name: (n, s) for name, (n, s) in out.items()}


async def in_process(url: str, api_id: str, keys: list[str], *, trace: bool) -> tuple[int, int, int, float, str]:
    """Verify every key once through the verification service, answers encoded as the server does."""
    from keystile.http.verify import answer_body

    clock = SystemClock()
    storage = await open_storage(url, clock)
    settings = Settings(database_url=url, cache_size=len(keys) + 10, cache_ttl_ms=3_600_000, events=False)
    ks = Keystile.create(storage, settings, clock)
    try:
        verification = ks.verification
        # Warm up everything but the cache: imports, the query's parse, the first storage round trip.
        first = await verification.verify(OPERATOR, KeyCheck(keys[0], api_id=api_id, permissions=QUERY))
        answer_body(first)
        ks.ctx.verifier.clear()
        census = _types() if trace else {}
        gc.collect()
        snapshot = None
        if trace:
            tracemalloc.start(1)
            snapshot = tracemalloc.take_snapshot()
        before = rss_of()
        started = time.perf_counter()
        for key in keys:
            result = await verification.verify(OPERATOR, KeyCheck(key, api_id=api_id, permissions=QUERY))
            if result.code != Code.VALID:
                raise RuntimeError(f"expected VALID, got {result!r}")
            answer_body(result)
        seconds = time.perf_counter() - started
        gc.collect()
        collected = time.perf_counter()
        gc.collect()  # a full collection over the filled cache: how long it holds the event loop
        full_gc_ms = (time.perf_counter() - collected) * 1000
        after = rss_of()
        tracked = len(gc.get_objects())
        breakdown = (
            f"  context: a full garbage collection with the cache filled takes {full_gc_ms:.0f} ms"
            f" ({tracked:,} objects tracked by the collector, {tracked / max(1, len(keys)):.2f} per key)"
        )
        if trace and snapshot is not None:
            breakdown += "\n" + _breakdown(snapshot, tracemalloc.take_snapshot(), len(keys))
            tracemalloc.stop()
            breakdown += "\n" + _type_census(len(keys), census)
        cached = len(ks.ctx.verifier)
        return before, after, cached, seconds, breakdown
    finally:
        await ks.close()
        await storage.close()


async def _post_all(port: int, root: str, api_id: str, keys: list[str], connections: int) -> None:
    """``POST /v1/keys/verify`` of every key once, over ``connections`` keep-alive connections."""
    queue = iter(keys)
    auth = f"Bearer {root}".encode()

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for key in queue:
                body = json.dumps({"key": key, "api_id": api_id, "permissions": QUERY}).encode()
                writer.write(
                    b"POST /v1/keys/verify HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    b"Authorization: " + auth + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                )
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                payload = await reader.readexactly(length)
                if b" 200 " not in status or b'"code":"VALID"' not in payload:
                    raise RuntimeError(f"unexpected answer {status!r} {payload[:200]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))


def _group_rss(group: int) -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == group:
                total += rss_of(entry.name)
        except (OSError, ValueError):
            continue
    return total


async def over_http(url: str, directory: Path, root: str, api_id: str, keys: list[str]) -> tuple[int, int, int, float]:
    from http_verify import Server

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
        "KEYSTILE_DATA_DIR": str(directory),
        "KEYSTILE_DATABASE_URL": url,
        "KEYSTILE_LOG_LEVEL": "warning",
        "KEYSTILE_CACHE_SIZE": str(len(keys) + 10),
        "KEYSTILE_CACHE_TTL_MS": "3600000",
    }
    server = Server("keystile", "keystile.server.app:app_from_env", factory=True, env=env, logs=directory / "ks.log")
    try:
        body = json.dumps({"key": keys[0], "api_id": api_id, "permissions": QUERY}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {root}"}
        status, payload = server.wait_ready(body, headers)
        if status != 200:
            raise RuntimeError(f"the server answered {status}: {payload[:300]!r}")
        await asyncio.sleep(2.0)  # the event writer's first flush, retention's first pass
        before = _group_rss(server.process.pid)
        started = time.perf_counter()
        await _post_all(server.port, root, api_id, keys[1:], connections=8)
        seconds = time.perf_counter() - started
        await asyncio.sleep(3.0)  # the event writer catches up: its buffer is not the cache
        after = _group_rss(server.process.pid)
        return before, after, len(keys) - 1, seconds
    finally:
        server.stop()


def _measure_in_child(url: str, api_id: str, keys: int, trace: bool) -> tuple[int, int, int, float, str]:
    """The in-process measurement in a process of its own: in the one that filled the database, the memory the
    import freed would be reused by the cache, and its growth understated."""
    command = [sys.executable, __file__, "--child", url, api_id, "--keys", str(keys)]
    if trace:
        command.append("--tracemalloc")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed: {done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return found["before"], found["after"], found["cached"], found["seconds"], found["breakdown"]


def _child(url: str, api_id: str, keys: int, trace: bool) -> int:
    plain = make_keys(keys)
    # The keys (a list of a million strings) are the benchmark's, not the server's: out of the garbage collector's
    # sight, as `keystile serve` puts what its start made (keystile.server.app.app_from_env).
    gc.collect()
    gc.freeze()
    before, after, cached, seconds, breakdown = asyncio.run(in_process(url, api_id, plain, trace=trace))
    print(json.dumps({"before": before, "after": after, "cached": cached, "seconds": seconds, "breakdown": breakdown}))
    return 0


def run(*, keys: int = 100_000, http: bool = False, trace: bool = False, storage: str = "sqlite") -> Result:
    if http and storage != "sqlite":
        raise RuntimeError("--http runs over SQLite only")
    plain = make_keys(keys)
    with tempfile.TemporaryDirectory(prefix="keystile-bench-mem-") as tmp:
        directory = Path(tmp)

        async def measure() -> tuple[tuple[int, int], tuple[int, int, int, float, str]]:
            async with _database(storage, directory) as url:
                root, api_id, sizes = await fill_database(url, plain)
                if http:
                    before, after, cached, seconds = await over_http(url, directory, root, api_id, plain)
                    return sizes, (before, after, cached, seconds, "")
                return sizes, _measure_in_child(url, api_id, keys, trace)

        sizes, (before, after, cached, seconds, breakdown) = asyncio.run(measure())
    return Result(
        "HTTP POST /v1/keys/verify, events on" if http else "in process, VerificationService",
        keys,
        sizes,
        before,
        after,
        cached,
        seconds,
        _digest_floor(min(keys, 100_000)),
        breakdown,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=100_000, help="keys to cache (default 100,000)")
    parser.add_argument("--http", action="store_true", help="fill a real server's cache over HTTP")
    parser.add_argument("--tracemalloc", action="store_true", help="where the bytes go (in process only)")
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--child", nargs=2, metavar=("DATABASE_URL", "API_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child[0], args.child[1], args.keys, args.tracemalloc)
    result = run(keys=args.keys, http=args.http, trace=args.tracemalloc, storage=args.storage)
    print(result.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

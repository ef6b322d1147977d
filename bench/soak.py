"""Memory soak: a real ``keystile serve`` verifying several hundred thousand keys in rotation for N minutes.

Does the server's memory stay flat once its cache is full? Cache entries are replaced all the time (every cached
key is asked of storage again once its TTL is over, and the cache drops its least recently used entry for each
new one), events are written, metrics counted: whatever of that is not freed shows up here as growth.

- Setup: a SQLite file in a temporary directory, migrated, a root key, one API and ``--keys`` keys (default
  300,000), each with a meta of about 200 bytes and two permissions (as ``memory_per_key.py`` makes them).
- Server: ``keystile serve`` (one worker, events on, default cache TTL), with a cache that holds every key.
- Load: ``--connections`` keep-alive connections (default 8) send ``POST /v1/keys/verify`` for the keys in order,
  round and round, paced to ``--rate`` verifications a second in all (default 2,000): each key comes back every
  ``keys / rate`` seconds, long after its TTL, so every verification is a cache miss that replaces an entry.
  Every answer must be ``VALID``.
- Every ``--sample`` seconds (default 5) the RSS of the server's processes (granian and its worker) is sampled.

Reported: RSS over time (one line a minute), and the slope of a least-squares line through the samples of the
second half of the run (the first half includes filling the cache), in MiB per minute and as growth per hour
relative to the RSS. Memory counts as flat when that projected growth is below 5% an hour. The first pass over
the keys fills the cache, and the second still grows a little (~150 B per key, as replaced entries' memory is
reused): read the slope of a run whose second half starts after the second pass (``minutes * rate / 2 >= 2 *
keys``; the defaults make four passes).

Run: ``python bench/soak.py [--minutes 10] [--keys 300000] [--rate 1000] [--sample 5]`` (not part of
``make test`` or ``bench/run.py``: it takes as long as it is told to).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from http_verify import free_port
from memory_per_key import QUERY, _group_rss, fill_database, make_keys

FLAT_PER_HOUR = 0.05
STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    rss: int
    verified: int


@dataclass(frozen=True, slots=True)
class Result:
    keys: int
    rate: float
    minutes: float
    samples: tuple[Sample, ...]
    errors: int

    @property
    def last_half(self) -> tuple[Sample, ...]:
        half = self.samples[-1].seconds / 2
        return tuple(s for s in self.samples if s.seconds >= half)

    @property
    def slope_mib_per_min(self) -> float:
        """Least-squares slope of RSS over time through the second half's samples."""
        points = self.last_half
        n = len(points)
        if n < 2:
            return 0.0
        mean_t = sum(p.seconds for p in points) / n
        mean_r = sum(p.rss for p in points) / n
        num = sum((p.seconds - mean_t) * (p.rss - mean_r) for p in points)
        den = sum((p.seconds - mean_t) ** 2 for p in points) or 1.0
        return num / den * 60 / 2**20

    @property
    def growth_per_hour(self) -> float:
        """The slope projected over an hour, relative to the second half's mean RSS."""
        points = self.last_half
        mean = sum(p.rss for p in points) / len(points) / 2**20
        return self.slope_mib_per_min * 60 / mean

    @property
    def flat(self) -> bool:
        return self.growth_per_hour < FLAT_PER_HOUR

    def report(self) -> str:
        last = self.samples[-1]
        lines = [
            f"Memory soak: keystile serve, {self.keys:,} keys in rotation at {self.rate:,.0f} verifications/s"
            f" for {self.minutes:g} min ({last.verified:,} verified: {last.verified / self.keys:.1f} passes over the"
            f" keys, {self.errors} errors)",
            "   minute   server RSS   verified",
        ]
        shown = -60.0
        for sample in self.samples:
            if sample.seconds - shown >= 60 or sample is last:
                shown = sample.seconds
                lines.append(f"  {sample.seconds / 60:7.1f}  {sample.rss / 2**20:8.1f} MiB  {sample.verified:9,}")
        half = self.last_half
        if half[0].verified < 2 * self.keys:
            lines.append("  (the second half starts before the second pass is over: its slope includes that growth)")
        lines += [
            f"  second half: RSS {min(s.rss for s in half) / 2**20:.1f}-{max(s.rss for s in half) / 2**20:.1f} MiB,"
            f" slope {self.slope_mib_per_min:+.3f} MiB/min = {self.growth_per_hour:+.1%} an hour"
            f" (flat below {FLAT_PER_HOUR:.0%})  {'flat' if self.flat else 'GROWING'}",
        ]
        return "\n".join(lines)


def _start_server(directory: Path, url: str, keys: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "KEYSTILE_DATA_DIR": str(directory),
        "KEYSTILE_DATABASE_URL": url,
        "KEYSTILE_LOG_LEVEL": "warning",
        "KEYSTILE_PORT": str(port),
        "KEYSTILE_CACHE_SIZE": str(keys + 10),
    }
    keystile = Path(sys.executable).with_name("keystile")
    log = (directory / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(keystile), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process, port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auth: bytes, body: bytes
) -> tuple[bytes, bytes]:
    writer.write(
        b"POST /v1/keys/verify HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
        b"Authorization: " + auth + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    status = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status, await reader.readexactly(length)


async def _wait_ready(port: int, process: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"keystile serve exited:\n{(directory / 'serve.log').read_text()[-3000:]}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("keystile serve did not listen in time") from None
            await asyncio.sleep(0.2)  # polling a starting process


async def _soak(
    port: int, group: int, root: str, api_id: str, keys: list[str], *, rate: float, seconds: float, sample_s: float,
    connections: int,
) -> tuple[list[Sample], int]:  # fmt: skip
    auth = f"Bearer {root}".encode()
    verified = errors = 0
    started = time.monotonic()
    stop_at = started + seconds
    samples = [Sample(0.0, _group_rss(group), 0)]

    async def one_connection(offset: int) -> None:
        nonlocal verified, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = connections / rate
        due = time.monotonic()
        i = offset
        try:
            while (now := time.monotonic()) < stop_at:
                if due > now:
                    await asyncio.sleep(due - now)
                due += interval
                body = json.dumps({"key": keys[i % len(keys)], "api_id": api_id, "permissions": QUERY}).encode()
                i += connections
                status, payload = await _request(reader, writer, auth, body)
                if b" 200 " in status and b'"code":"VALID"' in payload:
                    verified += 1
                else:
                    errors += 1
        finally:
            writer.close()

    async def sampler() -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(sample_s)
            samples.append(Sample(time.monotonic() - started, _group_rss(group), verified))

    await asyncio.gather(sampler(), *(one_connection(c) for c in range(connections)))
    return samples, errors


def run(*, keys: int = 300_000, minutes: float = 10.0, rate: float = 2_000.0, sample_s: float = 5.0,
        connections: int = 8) -> Result:  # fmt: skip
    plain = make_keys(keys)
    with tempfile.TemporaryDirectory(prefix="keystile-bench-soak-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'keystile.db'}"
        root, api_id, _ = asyncio.run(fill_database(url, plain))
        process, port = _start_server(directory, url, keys)
        try:

            async def soak() -> tuple[list[Sample], int]:
                await _wait_ready(port, process, directory)
                return await _soak(
                    port, process.pid, root, api_id, plain, rate=rate, seconds=minutes * 60, sample_s=sample_s,
                    connections=connections,
                )  # fmt: skip

            samples, errors = asyncio.run(soak())
        finally:
            _stop(process)
    return Result(keys, rate, minutes, tuple(samples), errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to verify (default 10)")
    parser.add_argument("--keys", type=int, default=300_000, help="keys in rotation (default 300,000)")
    parser.add_argument("--rate", type=float, default=2_000.0, help="verifications a second (default 2,000)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    args = parser.parse_args(argv)
    result = run(
        keys=args.keys, minutes=args.minutes, rate=args.rate, sample_s=args.sample, connections=args.connections
    )
    print(result.report())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())

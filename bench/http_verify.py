"""SPEC P2: ``POST /v1/keys/verify`` over HTTP against a hello-world endpoint on the same server stack.

Both servers are granian, ASGI interface, one worker, started side by side on two local ports:

* hello: ``bench/hello.py``, a raw ASGI app answering a fixed small JSON body without reading the request;
* Keystile: ``keystile.server.app:app_from_env`` over a SQLite file prepared before it starts (migrated, a root
  key bootstrapped, an API and a key with three permissions and a two-CIDR allowlist made through the services).

``wrk`` (one thread, ``--connections`` connections, ``--latency``) sends both the SAME request (``bench/post.lua``):
``POST /v1/keys/verify`` with the root key as a Bearer token and the body
``{key, api_id, permissions: "docs.read AND (docs.write OR admin)", ip}``, which Keystile answers ``VALID``.
After a warm-up of each, short runs alternate hello, Keystile, hello, Keystile ... The machines are shared and
their speed drifts in phases of seconds (the same hello server measured 17k to 44k req/s a minute apart), so each
round's two runs are back to back and the ratio is the median of the per-round ratios Keystile/hello (target
>= 0.8); the best run of each side, divided, is printed beside it.

Nothing is pinned: wrk and the server share the machine's cores (2 on the project's machines), so the numbers
are lower than on a dedicated box; the ratio is what to read.

Run: ``python bench/http_verify.py [--duration S] [--rounds N] [--self-test]``. ``--self-test`` serves hello on
both sides (checks the harness when the Keystile server is not there). Needs ``wrk``: installed with apt-get when
running as root, else the script says how.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import NewApi, NewKey
from keystile.service import CLI_ACTOR, Keystile
from keystile.storage import open_storage

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "post.lua"
PATH = "/v1/keys/verify"
KEYSTILE_TARGET = "keystile.server.app:app_from_env"
HELLO_TARGET = "hello:app"
READING_TARGET = "hello:app_reading_body"
PERMISSIONS = ["docs.read", "docs.write", "billing.read"]
QUERY = "docs.read AND (docs.write OR admin)"
ALLOWLIST = ["10.0.0.0/8", "192.168.0.0/16"]
CLIENT_IP = "10.20.30.40"
TARGET_RATIO = 0.8
STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk run: throughput, latency percentiles (ms), and anything that went wrong."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: str | None
    cpu_us: float | None = None  # server CPU time (all its processes) per request, from /proc

    def with_cpu(self, cpu_s: float | None) -> WrkRun:
        cpu_us = None if cpu_s is None or not self.requests else cpu_s * 1e6 / self.requests
        return replace(self, cpu_us=cpu_us)


@dataclass(frozen=True, slots=True)
class Result:
    """The P2 runs, round by round, and the ratio the SPEC sets a target for."""

    hello: tuple[WrkRun, ...]
    verify: tuple[WrkRun, ...]
    reading: tuple[WrkRun, ...]  # the hello world that reads the body: context, not the SPEC's baseline
    connections: int
    duration_s: float
    keystile_target: str

    @property
    def ratio(self) -> float:
        """Median over rounds of Keystile req/s / hello req/s (each pair measured back to back)."""
        return statistics.median(v.rps / h.rps for h, v in zip(self.hello, self.verify, strict=True))

    @property
    def best_ratio(self) -> float:
        """Best Keystile req/s / best hello req/s: each side's run least disturbed by the neighbours."""
        return max(r.rps for r in self.verify) / max(r.rps for r in self.hello)

    @property
    def cpu_ratio(self) -> float | None:
        """Median hello / Keystile server CPU time per request: the throughput ratio a quiet machine would show
        when both servers are CPU-bound; far less disturbed by the neighbours than req/s."""
        if any(r.cpu_us is None for r in (*self.hello, *self.verify)):
            return None
        hello_cpu = statistics.median(r.cpu_us or 0.0 for r in self.hello)
        verify_cpu = statistics.median(r.cpu_us or 0.0 for r in self.verify)
        return hello_cpu / verify_cpu if verify_cpu else None

    @property
    def reading_ratio(self) -> float:
        """Median over rounds of Keystile req/s / req/s of the hello world that reads the body."""
        return statistics.median(v.rps / r.rps for r, v in zip(self.reading, self.verify, strict=True))

    @property
    def p99_ms(self) -> float:
        """Median over rounds of Keystile's p99 latency."""
        return statistics.median(r.p99_ms for r in self.verify)

    @property
    def errors(self) -> list[str]:
        found = []
        for name, runs in (("hello", self.hello), ("verify", self.verify), ("hello-reading-body", self.reading)):
            for i, run in enumerate(runs):
                if run.non_2xx:
                    found.append(f"{name} round {i + 1}: {run.non_2xx} non-2xx responses")
                if run.socket_errors:
                    found.append(f"{name} round {i + 1}: socket errors {run.socket_errors}")
        return found

    def report(self) -> str:
        def row(label: str, h: WrkRun, v: WrkRun, ratio: str) -> str:
            h_cpu = f"{h.cpu_us:.0f}" if h.cpu_us is not None else "-"
            v_cpu = f"{v.cpu_us:.0f}" if v.cpu_us is not None else "-"
            return (
                f"  {label:<7}{h.rps:>11,.0f} {h.p50_ms:>7.2f} {h.p99_ms:>7.2f} {h_cpu:>7} |"
                f"{v.rps:>11,.0f} {v.p50_ms:>7.2f} {v.p99_ms:>7.2f} {v_cpu:>7} | {ratio:>5}"
            )

        lines = [
            f"P2 HTTP POST {PATH}: granian asgi, 1 worker; wrk -t1 -c{self.connections} -d{self.duration_s:g}s "
            f"per run, hello and verify alternating; {os.cpu_count()} CPUs shared by wrk and both servers "
            "(nothing pinned)",
            f"  verify server: {self.keystile_target}; cpu us = server CPU time per request",
            f"  {'round':<7}{'hello/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} |"
            f"{'verify/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} | {'ratio':>5}",
        ]
        for i, (h, v) in enumerate(zip(self.hello, self.verify, strict=True)):
            lines.append(row(str(i + 1), h, v, f"{v.rps / h.rps:.2f}"))
        lines.append(row("median", _median_run(self.hello), _median_run(self.verify), f"{self.ratio:.2f}"))
        lines.append(
            f"  verify / hello throughput = {self.ratio:.2f} (median of rounds; best/best {self.best_ratio:.2f}), "
            f"target >= {TARGET_RATIO:g}"
        )
        if self.cpu_ratio is not None:
            lines.append(
                f"  hello / verify server CPU per request = {self.cpu_ratio:.2f} (the same ratio, seen from CPU time)"
            )
        lines.append(f"  verify p99 latency = {self.p99_ms:.2f} ms (median of rounds)")
        reading = _median_run(self.reading)
        lines.append(
            f"  context: a hello world that reads the body first: {reading.rps:,.0f} req/s, "
            f"p99 {reading.p99_ms:.2f} ms, cpu {reading.cpu_us or 0:.0f} us; verify / it = {self.reading_ratio:.2f}"
        )
        lines.extend(f"  ERROR {error}" for error in self.errors)
        return "\n".join(lines)


def _median_run(runs: tuple[WrkRun, ...]) -> WrkRun:
    """Each column's median (not one actual run)."""
    cpu = [r.cpu_us for r in runs if r.cpu_us is not None]
    return WrkRun(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        requests=int(statistics.median(r.requests for r in runs)),
        non_2xx=0,
        socket_errors=None,
        cpu_us=statistics.median(cpu) if cpu else None,
    )


# -- preparing the database ---------------------------------------------------------------------------------------


async def prepare_database(url: str) -> tuple[str, str, str]:
    """Migrate, bootstrap a root key, create an API and a key; returns (root key, api id, key) in plain text."""
    clock = SystemClock()
    storage = await open_storage(url, clock)
    try:
        await storage.migrate()
        ks = Keystile.create(storage, Settings(database_url=url), clock)
        created = await ks.root_keys.bootstrap()
        if created is None:
            raise RuntimeError(f"{url} already has a root key; the benchmark needs a fresh database")
        _, root = created
        api = await ks.apis.create(CLI_ACTOR, NewApi(name="bench"))
        _, key = await ks.keys.create(
            CLI_ACTOR, api.id, NewKey(name="bench", permissions=PERMISSIONS, ip_allowlist=ALLOWLIST)
        )
        return root, api.id, key
    finally:
        await storage.close()


# -- wrk ------------------------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of ``wrk``, installed with apt-get when missing and running as root; raises RuntimeError."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing it with apt-get", file=sys.stderr)
        if subprocess.run(["apt-get", "install", "-y", "wrk"], check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise RuntimeError(
        "the HTTP benchmark needs wrk (https://github.com/wg/wrk): `sudo apt-get install wrk` on Debian/Ubuntu, "
        "`brew install wrk` on macOS; then run `make bench` again"
    )


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(output: str) -> WrkRun:
    """Read requests/s, p50, p99, request count and errors from ``wrk --latency`` output."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output has no {pattern!r}:\n{output}")
        return match

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:\s+(.+)$", output, re.MULTILINE)
    return WrkRun(
        rps=float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=_duration_ms(find(r"^\s+50%\s+(\S+)")[1]),
        p99_ms=_duration_ms(find(r"^\s+99%\s+(\S+)")[1]),
        requests=int(find(r"^\s+(\d+) requests in")[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=errors[1].strip() if errors else None,
    )


def run_wrk(
    wrk: str, url: str, env: dict[str, str], connections: int, duration_s: float, script: Path = LUA_SCRIPT
) -> WrkRun:
    """One wrk run of the shared request (``script``) against ``url``."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script), url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=duration_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


# -- servers --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def group_cpu_seconds(group: int) -> float | None:
    """User + system CPU time of every process in the process group ``group``; None without /proc."""
    total = 0
    try:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue  # the process ended while we looked
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == group:  # process group: granian's main process and its workers
                total += int(fields[11]) + int(fields[12])
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    """A granian process (ASGI, one worker) serving ``target`` on a free local port."""

    def __init__(self, name: str, target: str, *, factory: bool, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.port = free_port()
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        if factory:
            command.append("--factory")
        command.append(target)
        self._log = logs.open("wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=BENCH_DIR, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._log_path = logs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def request(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send the benchmark's request once; returns (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Wait until the server answers; raises RuntimeError (with its output) if it exits or times out."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited ({self.process.returncode}):\n{self.output()}")
            try:
                return self.request(body, headers)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} server did not answer in time:\n{self.output()}") from None
                time.sleep(0.1)  # polling a starting process; nothing in the product waits like this

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of every process of the server (granian and its worker); None without /proc."""
        return group_cpu_seconds(self.process.pid)

    def measure(self, wrk: str, env: dict[str, str], connections: int, duration_s: float) -> WrkRun:
        """One wrk run against this server, with the CPU time the server spent on it."""
        before = self.cpu_seconds()
        run = run_wrk(wrk, self.url, env, connections, duration_s)
        after = self.cpu_seconds()
        return run.with_cpu(None if before is None or after is None else after - before)

    def output(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def _check_verify_answer(status: int, payload: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"Keystile answered {status}: {payload[:500]!r}")
    answer = json.loads(payload)
    if answer.get("valid") is not True or answer.get("code") != "VALID":
        raise RuntimeError(f"Keystile did not answer VALID: {answer.get('code')!r}")


def keystile_available() -> str | None:
    """``None`` when the Keystile server module can be imported, else why not."""
    module = KEYSTILE_TARGET.split(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except ImportError as exc:
        return f"{module} cannot be imported ({exc})"
    return None if found is not None else f"{module} does not exist yet"


def run(
    *, duration_s: float = 2.0, warmup_s: float = 2.0, rounds: int = 7, connections: int = 32, self_test: bool = False
) -> Result:
    """Run P2; raises RuntimeError when a server cannot start, does not answer VALID, or wrk is missing."""
    wrk = ensure_wrk()
    if not self_test and (why := keystile_available()) is not None:
        raise RuntimeError(why)
    with tempfile.TemporaryDirectory(prefix="keystile-bench-http-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'keystile.db'}"
        root, api_id, key = asyncio.run(prepare_database(url))
        body = json.dumps({"key": key, "api_id": api_id, "permissions": QUERY, "ip": CLIENT_IP})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {root}"}
        # Keys travel to wrk by environment, never through a file (bench/post.lua reads them).
        wrk_env = {**os.environ, "BENCH_BODY": body, "BENCH_AUTHORIZATION": headers["Authorization"]}
        server_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
            "KEYSTILE_DATA_DIR": str(directory),
            "KEYSTILE_DATABASE_URL": url,
            "KEYSTILE_LOG_LEVEL": "warning",
        }
        target = HELLO_TARGET if self_test else KEYSTILE_TARGET
        servers: list[Server] = []
        try:
            hello = Server("hello", HELLO_TARGET, factory=False, env=server_env, logs=directory / "hello.log")
            servers.append(hello)
            verify = Server("keystile", target, factory=not self_test, env=server_env, logs=directory / "ks.log")
            servers.append(verify)
            reading = Server("hello-reading", READING_TARGET, factory=False, env=server_env, logs=directory / "r.log")
            servers.append(reading)
            hello.wait_ready(body.encode(), headers)
            reading.wait_ready(body.encode(), headers)
            answer = verify.wait_ready(body.encode(), headers)
            if not self_test:
                _check_verify_answer(*answer)
            for server in servers:
                run_wrk(wrk, server.url, wrk_env, connections, warmup_s)
            runs: dict[str, list[WrkRun]] = {server.name: [] for server in servers}
            for _ in range(rounds):
                for server in servers:  # hello, Keystile, hello reading the body, hello, Keystile, ...
                    runs[server.name].append(server.measure(wrk, wrk_env, connections, duration_s))
            if not self_test:
                _check_verify_answer(*verify.request(body.encode(), headers))
        finally:
            for server in servers:
                server.stop()
    return Result(
        tuple(runs["hello"]),
        tuple(runs["keystile"]),
        tuple(runs["hello-reading"]),
        connections,
        duration_s,
        f"{target} (self-test)" if self_test else target,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measured run (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="hello/Keystile pairs (default 7)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--self-test", action="store_true", help="serve hello on both sides (harness check)")
    args = parser.parse_args(argv)
    try:
        result = run(
            duration_s=args.duration,
            warmup_s=args.warmup,
            rounds=args.rounds,
            connections=args.connections,
            self_test=args.self_test,
        )
    except RuntimeError as exc:
        print(f"P2 HTTP benchmark not run: {exc}", file=sys.stderr)
        return 1
    print(result.report())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run Keystile's benchmarks (SPEC P1-P8), print their ratios against the SPEC's targets, write docs/benchmarks.md.

``make bench`` installs the bench extras and runs this. Each benchmark measures its own baseline in the same
run, so the ratios mean something on a shared, noisy machine where the absolute numbers do not. A missed target
is reported, not turned into a failure (noise can cause one; read the details above the summary); the exit
status is 1 only when a benchmark could not run.

A full run (no ``--only``, no ``--quick``) writes the summary to ``docs/benchmarks.md``: every P bar with its
target, what was measured, the baseline measured in the same run, the machine, the date and the command
(``--output`` elsewhere, ``--no-write`` not at all). P4 imports a million keys into a throwaway PostgreSQL database:
a few minutes of the run. ``--quick`` runs every benchmark briefly, to check that it
still runs (the test suite does this); its numbers mean nothing and it writes no file unless ``--output`` says so.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import events_verify
import forward_auth
import http_verify
import limits_verify
import memory_per_key
import miss_latency
import tail_latency
import tokens
import verify_inprocess

BENCH_DIR = Path(__file__).resolve().parent
DOCS = BENCH_DIR.parent / "docs" / "benchmarks.md"

BARS: dict[str, str] = {
    "P1": "in-process verification of a cached key: <= 3x the floor (sha256 + dict lookup), >= 200x "
    "djangorestframework-api-key",
    "P2": "POST /v1/keys/verify and /v1/auth: >= 0.8 of a hello world reading the body (same stack and "
    "workers); p99 <= 2x the hello world's",
    "P3": "nginx + /v1/auth: >= 0.9 of nginx with auth_request to a verifier that checks nothing",
    "P4": "1,000,000 keys in PostgreSQL: a cache miss over HTTP <= a hit + 0.6 ms (p50); import of 1,000,000 "
    "keys under 2 minutes",
    "P5": "Redis rate limits and credits on: >= 0.7 of the verification throughput without them",
    "P6": "verification events on: >= 0.9 of the throughput with them off, no event lost",
    "P7": "<= 1 KiB of resident memory per cached key with <= 256 bytes of meta",
    "P8": "tokens: issuing <= 3x a verification over HTTP; a token seen before checks offline within 2x a cached key",
}
"""The SPEC's performance bars, as the table names them (a bar with no row measured is "not measured")."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the summary: a measure of a P bar, with the baseline measured beside it in the same run."""

    spec: str
    what: str
    measured: str
    target: str
    met: bool | None
    baseline: str = ""

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("met" if self.met else "MISSED")

    def __str__(self) -> str:
        return f"{self.spec:<4} {self.what:<52} {self.measured:>10} {self.target:>9}  {self.verdict}"


def _row(spec: str, what: str, measured: str, target: str, met: bool | None, baseline: str = "") -> Row:
    return Row(spec, what, measured, target, met, baseline)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    """CPU count and model, load average, OS and Python: what the numbers were measured on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    return (
        f"{os.cpu_count()} CPUs ({model}), load average {load} at the start; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
    )


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def write_docs(
    path: Path,
    rows: list[Row],
    failed: list[str],
    *,
    command: str,
    started: str,
    about: str,
    commit: str = "",
    quick: bool = False,
) -> None:
    """The summary as a Markdown page: every P bar, its rows or "not measured"."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py` (see [bench/README.md](../bench/README.md) for what each benchmark does and how to",
        "read it). Every ratio compares Keystile with a baseline measured in the same run, interleaved with it, on",
        "the same machine: absolute numbers on a shared machine mean little, ratios do.",
        "",
        f"- Date: {started}",
        f"- Machine: {about}",
        f"- Code: commit {commit or _commit()}",
        f"- Command: `{command}`",
        "",
        *(
            ["**A quick run: every benchmark ran briefly, to check that it runs; these numbers mean nothing.**", ""]
            if quick
            else []
        ),
        "| Bar | Measure | Target | Measured | Baseline in the same run | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for spec, bar in BARS.items():
        mine = [row for row in rows if row.spec == spec]
        if not mine:
            lines.append(f"| {spec} | {bar} | | not measured | | - |")
            continue
        for row in mine:
            what = row.what.strip()
            lines.append(
                f"| {spec} | {_cell(what)} | {_cell(row.target)} | {_cell(row.measured)} | {_cell(row.baseline)} "
                f"| {row.verdict} |"
            )
    lines += ["", "What each bar asks:", ""]
    lines += [f"- **{spec}**: {bar}." for spec, bar in BARS.items()]
    if failed:
        lines += ["", "Not measured in this run:", ""]
        lines += [f"- {_cell(problem)}" for problem in failed]
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Keystile benchmarks (SPEC P1-P8)")
    parser.add_argument("--only", choices=["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"], help="run one benchmark")
    parser.add_argument("--quick", action="store_true", help="each benchmark briefly: checks they run (no numbers)")
    parser.add_argument("--keys", type=int, default=1000, help="P1: keys on each side (default 1000)")
    parser.add_argument("--duration", type=float, default=2.0, help="P2: seconds per wrk run (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="P2: hello/verify pairs (default 7)")
    parser.add_argument("--memory-keys", type=int, default=100_000, help="P7: keys cached (default 100,000)")
    parser.add_argument("--p4-keys", type=int, default=1_000_000, help="P4: keys in PostgreSQL (default 1,000,000)")
    parser.add_argument("--output", type=Path, help=f"write the summary here (default {DOCS} on a full run)")
    parser.add_argument("--no-write", action="store_true", help="write no summary file")
    args = parser.parse_args(argv)

    quick = args.quick
    keys, repeats, passes = (200, 3, 1) if quick else (args.keys, 25, 5)
    duration, rounds, warmup = (1.0, 1, 1.0) if quick else (args.duration, args.rounds, 2.0)
    memory_keys = 3000 if quick else args.memory_keys
    p4_keys, p4_sample = (5000, 100) if quick else (args.p4_keys, 2000)
    p8_requests, p8_calls, p8_repeats, p8_fresh = (20, 200, 2, 30) if quick else (200, 2000, 7, 700)
    output = args.output
    if output is None and not quick and args.only is None and not args.no_write:
        output = DOCS
    command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    about = machine()
    commit = _commit()  # the code measured: read before the run, which may outlast a commit

    print(f"Keystile benchmarks: {about}; {started}")
    rows: list[Row] = []
    failed: list[str] = []

    if args.only in (None, "p1"):
        print()
        p1 = verify_inprocess.run(keys=keys, repeats=repeats, passes=passes)
        print(p1.report())
        floor_ratio = p1.floor_ratio
        rows.append(
            _row(
                "P1",
                "verify_cached / floor (sha256 + dict lookup)",
                f"{floor_ratio:.2f}x",
                f"<= {verify_inprocess.TARGET_FLOOR_RATIO:g}x",
                floor_ratio <= verify_inprocess.TARGET_FLOOR_RATIO,
                f"floor {p1.floor.best:,.0f} ns/call; verify_cached {p1.cached.best:,.0f} ns/call",
            )
        )
        if p1.drf_ratio is None or p1.drf is None:
            rows.append(_row("P1", "drf-api-key is_valid / verify_cached", "not run", "", None))
            if not quick:  # the bench extras are not installed: checking that the rest runs is what --quick is for
                failed.append(f"P1 djangorestframework-api-key: {p1.drf_error}")
        else:
            rows.append(
                _row(
                    "P1",
                    "drf-api-key is_valid / verify_cached",
                    f"{p1.drf_ratio:.0f}x",
                    f">= {verify_inprocess.TARGET_DRF_RATIO:g}x",
                    p1.drf_ratio >= verify_inprocess.TARGET_DRF_RATIO,
                    f"drf is_valid {p1.drf.best:,.0f} ns/call",
                )
            )

    if args.only in (None, "p2"):
        print()
        try:
            p2 = http_verify.run(duration_s=duration, rounds=rounds, warmup_s=warmup)
        except RuntimeError as exc:
            print(f"P2 HTTP benchmark not run: {exc}")
            rows.append(_row("P2", "POST /v1/keys/verify / hello world (req/s)", "not run", "", None))
            failed.append(f"P2: {exc}")
        else:
            print(p2.report())
            reading_rps = _median([r.rps for r in p2.reading])
            rows.append(
                _row(
                    "P2",
                    "POST /v1/keys/verify / hello world reading the body",
                    f"{p2.reading_ratio:.2f}",
                    f">= {http_verify.TARGET_RATIO:g}",
                    p2.reading_ratio >= http_verify.TARGET_RATIO,
                    f"hello reading the body {reading_rps:,.0f} req/s",
                )
            )
            hello_rps = _median([r.rps for r in p2.hello])
            rows.append(
                _row(
                    "P2",
                    "  context: verify / hello world not reading it",
                    f"{p2.ratio:.2f}",
                    "",
                    None,
                    f"hello {hello_rps:,.0f} req/s",
                )
            )
            if p2.cpu_ratio is not None:
                rows.append(_row("P2", "  hello / verify server CPU per request", f"{p2.cpu_ratio:.2f}", "", None))
            hello_p99 = _median([r.p99_ms for r in p2.reading])
            rows.append(
                _row(
                    "P2",
                    "  p99 of POST /v1/keys/verify / hello world's p99",
                    f"{p2.p99_ms / hello_p99:.2f}x",
                    "<= 2x",
                    p2.p99_ms <= 2 * hello_p99,
                    f"verify p99 {p2.p99_ms:.2f} ms, hello (reading) p99 {hello_p99:.2f} ms",
                )
            )
            failed.extend(f"P2: {error}" for error in p2.errors)

    if args.only in (None, "p3"):
        print()
        try:
            p3 = forward_auth.run(duration_s=duration, rounds=rounds, warmup_s=warmup)
        except (RuntimeError, OSError) as exc:
            print(f"P3 forward-auth benchmark not run: {exc}")
            rows.append(_row("P3", "nginx + /v1/auth / nginx + empty verifier", "not run", "", None))
            failed.append(f"P3: {exc}")
        else:
            print(p3.report())
            rows.append(
                _row(
                    "P3",
                    "nginx + /v1/auth / nginx + empty verifier (req/s)",
                    f"{p3.verifier_ratio:.2f}",
                    ">= 0.9",
                    p3.verifier_ratio >= 0.9,
                    f"nginx + empty verifier {p3.rps('nginx_empty'):,.0f} req/s",
                )
            )
            p99 = f"{p3.p99_ms('nginx_auth'):.2f} ms"
            rows.append(
                _row(
                    "P3",
                    "  p99 latency through nginx + /v1/auth",
                    p99,
                    "reported",
                    None,
                    f"nginx + empty verifier p99 {p3.p99_ms('nginx_empty'):.2f} ms",
                )
            )
            rows.append(
                _row(
                    "P3",
                    "  context: nginx + /v1/auth / nginx alone",
                    f"{p3.p3_ratio:.2f}",
                    "",
                    None,
                    f"nginx alone {p3.rps('nginx_plain'):,.0f} req/s",
                )
            )
            rows.append(_row("P3", "  context: nginx + empty verifier / alone", f"{p3.empty_ratio:.2f}", "", None))
            rows.append(
                _row(
                    "P2",
                    "GET /v1/auth / hello world (req/s)",
                    f"{p3.p2_ratio:.2f}",
                    f">= {forward_auth.TARGET_P2:g}",
                    p3.p2_ratio >= forward_auth.TARGET_P2,
                    f"hello {p3.rps('hello'):,.0f} req/s",
                )
            )
            auth_p99, hello_p99 = p3.p99_ms("auth"), p3.p99_ms("hello")
            rows.append(
                _row(
                    "P2",
                    "  p99 of GET /v1/auth / hello world's p99",
                    f"{auth_p99 / hello_p99:.2f}x",
                    "<= 2x",
                    auth_p99 <= 2 * hello_p99,
                    f"/v1/auth p99 {auth_p99:.2f} ms, hello p99 {hello_p99:.2f} ms",
                )
            )
            failed.extend(f"P3: {error}" for error in p3.errors)

    if args.only in (None, "p2"):
        # P2's p99 clause at a fixed load: the saturated p99s above follow throughput (a request waits for those
        # queued before it); at half the throughput every server is idle between requests, so what is left of a
        # p99 ratio there is what stalls a request: the event loop held, or the CPU taken by other work (the event
        # writer process's batches, on a 2-core machine shared with the load generator).
        print()
        try:
            tail = tail_latency.run(duration_s=max(1, round(duration)), rounds=1 if quick else 3, load=0.5)
        except RuntimeError as exc:
            print(f"P2 tail latency benchmark not run: {exc}")
            failed.append(f"P2 tail latency: {exc}")
        else:
            print(tail.report())
            for measured, baseline, what in (
                ("POST verify, events on", "POST hello reading the body", "verify"),
                ("GET /v1/auth, events on", "GET hello", "/v1/auth"),
            ):
                ratio = tail.p99_ratio(measured, baseline, paced=True)
                method = measured.split()[0]
                rows.append(
                    _row(
                        "P2",
                        f"  p99 of {what} / hello's, half load, events on",
                        f"{ratio:.2f}x",
                        "<= 2x",
                        ratio <= tail_latency.TARGET_P99_RATIO,
                        f"{tail.rates[method]:,.0f} req/s offered to both (half of events on saturated);"
                        f" p99 {tail.median(measured, 'p99_ms', paced=True):.2f} ms,"
                        f" hello {tail.median(baseline, 'p99_ms', paced=True):.2f} ms",
                    )
                )
            failed.extend(f"P2 tail latency: {error}" for error in tail.errors)

    if args.only in (None, "p4"):
        print()
        try:
            p4 = miss_latency.run(keys=p4_keys, sample=p4_sample)
        except (RuntimeError, OSError) as exc:
            print(f"P4 benchmark not run: {exc}")
            rows.append(_row("P4", "cache miss p50 - cache hit p50 (PostgreSQL)", "not run", "", None))
            failed.append(f"P4: {exc}")
        else:
            print(p4.report())
            hit = statistics.median(p4.hit_ms)
            miss = statistics.median(p4.miss_ms)
            rows.append(
                _row(
                    "P4",
                    f"cache miss p50 - hit p50 over HTTP, {p4.keys:,} keys",
                    f"{p4.extra_ms:.2f} ms",
                    f"<= {miss_latency.TARGET_EXTRA_MS} ms",
                    p4.met,
                    f"hit p50 {hit:.2f} ms, miss p50 {miss:.2f} ms; SELECT 1 p50 "
                    f"{statistics.median(p4.round_trip_ms):.2f} ms",
                )
            )
            rows.append(
                _row(
                    "P4",
                    "  p99 of misses / of hits",
                    f"{miss_latency.percentile(list(p4.miss_ms), 99):.2f} ms",
                    "reported",
                    None,
                    f"hits p99 {miss_latency.percentile(list(p4.hit_ms), 99):.2f} ms",
                )
            )
            rate = p4.keys / p4.import_s
            rows.append(
                _row(
                    "P4",
                    "  import of 1,000,000 keys (projected from this run)",
                    f"{1_000_000 / rate:.0f} s",
                    "< 120 s",
                    1_000_000 / rate < 120,
                    f"{p4.keys:,} keys in {p4.import_s:.1f} s",
                )
            )

    if args.only in (None, "p5"):
        print()
        try:
            p5 = limits_verify.run(duration_s=duration, rounds=rounds, warmup_s=warmup)
        except (RuntimeError, OSError) as exc:
            print(f"P5 benchmark not run: {exc}")
            rows.append(_row("P5", "verify with Redis limits+credits / without", "not run", "", None))
            failed.append(f"P5: {exc}")
        else:
            print(p5.report())
            rows.append(
                _row(
                    "P5",
                    "verify with Redis limits+credits / without",
                    f"{p5.ratio:.2f}",
                    f">= {limits_verify.TARGET_RATIO:g}",
                    p5.ratio >= limits_verify.TARGET_RATIO,
                    f"without {_median([r.rps for r in p5.plain]):,.0f} req/s",
                )
            )
            if p5.cpu_ratio is not None:
                rows.append(_row("P5", "  same, from server CPU time per request", f"{p5.cpu_ratio:.2f}", "", None))
            rows.append(_row("P5", "  context: Redis limits + database credits", f"{p5.database_ratio:.2f}", "", None))
            failed.extend(f"P5: {error}" for error in p5.errors)

    if args.only in (None, "p6"):
        print()
        try:
            p6 = events_verify.run(duration_s=duration, rounds=rounds, warmup_s=warmup)
        except (RuntimeError, OSError) as exc:
            print(f"P6 benchmark not run: {exc}")
            rows.append(_row("P6", "verify with events on / events off", "not run", "", None))
            failed.append(f"P6: {exc}")
        else:
            print(p6.report())
            rows.append(
                _row(
                    "P6",
                    "verify with events on / events off",
                    f"{p6.ratio:.2f}",
                    f">= {events_verify.TARGET_RATIO:g}",
                    p6.ratio >= events_verify.TARGET_RATIO,
                    f"events off {_median([r.rps for r in p6.off]):,.0f} req/s",
                )
            )
            if p6.cpu_ratio is not None:
                rows.append(_row("P6", "  same, from server CPU time per request", f"{p6.cpu_ratio:.2f}", "", None))
            rows.append(_row("P6", "  events lost (answered, not stored)", f"{p6.lost:,}", "0", p6.lost == 0))
            dropped = "-" if p6.dropped is None else f"{p6.dropped:,}"
            rows.append(
                _row(
                    "P6",
                    "  events dropped by the buffer (/metrics)",
                    dropped,
                    "0",
                    None if p6.dropped is None else p6.dropped == 0,
                )
            )
            failed.extend(f"P6: {error}" for error in p6.errors)

    if args.only in (None, "p7"):
        print()
        try:
            p7 = memory_per_key.run(keys=memory_keys)
        except (RuntimeError, OSError) as exc:
            print(f"P7 benchmark not run: {exc}")
            rows.append(_row("P7", "RSS growth per cached key", "not run", "", None))
            failed.append(f"P7: {exc}")
        else:
            print(p7.report())
            rows.append(
                _row(
                    "P7",
                    f"RSS growth per cached key ({p7.keys:,} keys, in process)",
                    f"{p7.per_key:,.0f} B",
                    f"<= {memory_per_key.TARGET_BYTES:,} B",
                    p7.met,
                    f"RSS before the fill {p7.rss_before / 2**20:,.0f} MiB; a dict of the digests alone "
                    f"{p7.digest_floor:.0f} B/key",
                )
            )

    if args.only in (None, "p8"):
        print()
        try:
            p8 = tokens.run(requests=p8_requests, calls=p8_calls, repeats=p8_repeats, fresh_tokens=p8_fresh)
        except (RuntimeError, OSError) as exc:
            print(f"P8 token benchmark not run: {exc}")
            rows.append(_row("P8", "POST /v1/tokens / POST /v1/keys/verify", "not run", "", None))
            failed.append(f"P8: {exc}")
        else:
            print(p8.report())
            rows.append(
                _row(
                    "P8",
                    "POST /v1/tokens / POST /v1/keys/verify (HTTP)",
                    f"{p8.issue_ratio:.2f}x",
                    f"<= {tokens.TARGET_ISSUE_RATIO:g}x",
                    p8.issue_ratio <= tokens.TARGET_ISSUE_RATIO,
                    f"verify {p8.best('HTTP POST /v1/keys/verify') / 1000:,.0f} µs per request",
                )
            )
            rows.append(
                _row(
                    "P8",
                    "integration: token seen before / cached key",
                    f"{p8.cached_ratio:.2f}x",
                    f"<= {tokens.TARGET_CACHED_RATIO:g}x",
                    p8.cached_ratio <= tokens.TARGET_CACHED_RATIO,
                    f"cached key {p8.best('remote: cached key') / 1000:,.1f} µs per check",
                )
            )
            rows.append(_row("P8", "  context: token first seen / cached key", f"{p8.first_ratio:.1f}x", "", None))

    print()
    print("Summary (ratios measured in this run; absolute numbers above are for context only)")
    print(str(_row("SPEC", "measure", "measured", "target", None)).replace("  -", "  verdict"))
    for row in rows:
        print(row)
    for spec in BARS:
        if not any(row.spec == spec for row in rows):
            print(_row(spec, "(no benchmark run)", "not measured", "", None))
    for problem in failed:
        print(f"NOT MEASURED: {problem}")
    if output is not None and not args.no_write:
        write_docs(output, rows, failed, command=command, started=started, about=about, commit=commit, quick=quick)
        print(f"wrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

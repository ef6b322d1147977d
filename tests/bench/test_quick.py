"""The benchmarks still run: ``bench/run.py --quick`` runs every one of them briefly and writes its summary.

Never asserts a speed (the quick numbers mean nothing): only that each benchmark ran, measured what it measures and
found no error (non-2xx answers, lost events), and that the summary names every SPEC bar.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.availability import missing, require_tool
from tests.redis.fixtures import redis_url  # noqa: F401 (a fixture)

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _bench(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``bench/<script> args`` from bench/ (as its README does), capturing its output."""
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=BENCH,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _require_nginx() -> None:
    if not (shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")):
        missing("nginx")


def test_every_benchmark_runs_in_quick_mode(tmp_path: Path, redis_url: str, pg_url: str) -> None:  # noqa: F811
    require_tool("wrk")
    _require_nginx()
    summary = tmp_path / "benchmarks.md"
    env = {"KEYSTILE_BENCH_REDIS_URL": redis_url, "KEYSTILE_BENCH_PG_DSN": pg_url}
    done = _bench("run.py", "--quick", "--output", str(summary), env=env, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "NOT MEASURED" not in output, output[-5000:]
    table = [line for line in summary.read_text().splitlines() if line.startswith("| P")]
    for bar in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"):
        assert any(line.startswith(f"| {bar} |") for line in table), bar
    measured = {line.split("|")[1].strip() for line in table if "not measured" not in line and "not run" not in line}
    assert {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"} <= measured
    # P2's p99 at a fixed load, where what is left of a ratio is stalls, not throughput
    assert any("half load" in line and "| P2 |" in line for line in table), table


def test_the_event_writer_benchmark_runs_in_quick_mode() -> None:
    done = _bench("event_writes.py", "--events", "6000", "--keys", "500", timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "500 keys" in done.stdout, done.stdout
    assert "many keys / one key = " in done.stdout, done.stdout


# The benchmarks bench/run.py does not run (they measure more than a bar, or a bar another way), each briefly: the
# arguments that keep it short, and a line of its output that says it measured what it measures.
OUTSIDE_THE_SUMMARY = [
    ("analytics_query.py", ["--events", "20000", "--runs", "3", "--raw-runs", "1"], "rollups read by an index: yes"),
    ("audit_append.py", [], "ratio chained / unchained"),
    ("import_keys.py", ["--keys", "5000"], "5,000 keys stored, sample verifies ['VALID', 'VALID', 'VALID']: OK"),
    ("integrations_verify.py", ["-n", "200"], "remote without cache / local:"),
    (
        "load_events.py",
        ["--events", "20000", "--keys", "50", "--apis", "2", "--owners", "10", "--days", "2"],
        "analytics == raw events: OK",
    ),
    ("loop_lag.py", ["--seconds", "1", "--rounds", "1"], "longest hold with events on ="),
    ("redis_client.py", ["--calls", "200", "--rounds", "1"], "EVALSHA refund.lua, 32 concurrent"),
    ("soak.py", ["--minutes", "0.25", "--keys", "2000", "--rate", "300", "--sample", "3"], "second half: RSS"),
    (
        "tail_latency.py",
        ["--duration", "1", "--rounds", "1"],
        "at a fixed load, p99 GET /v1/auth, events off / GET hello =",
    ),
]


@pytest.mark.parametrize(
    ("script", "args", "measured"), OUTSIDE_THE_SUMMARY, ids=[case[0] for case in OUTSIDE_THE_SUMMARY]
)
def test_each_benchmark_outside_the_summary_runs_briefly(
    script: str, args: list[str], measured: str, pg_url: str
) -> None:
    if script == "tail_latency.py":
        require_tool("wrk")
    if script == "redis_client.py":
        require_tool("redis-server")
    done = _bench(script, *args, env={"KEYSTILE_BENCH_PG_DSN": pg_url})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert measured in done.stdout, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "ERROR" not in output, output[-3000:]


def test_a_tail_latency_run_lasts_whole_seconds_as_wrk_counts_them() -> None:
    done = _bench("tail_latency.py", "--duration", "0.5", timeout=60)
    assert done.returncode == 2
    assert "'0.5' is not a whole number of seconds" in done.stderr

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


def _require_nginx() -> None:
    if not (shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")):
        missing("nginx")


def test_every_benchmark_runs_in_quick_mode(tmp_path: Path, redis_url: str, pg_url: str) -> None:  # noqa: F811
    require_tool("wrk")
    _require_nginx()
    summary = tmp_path / "benchmarks.md"
    env = {**os.environ, "KEYSTILE_BENCH_REDIS_URL": redis_url, "KEYSTILE_BENCH_PG_DSN": pg_url}
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--output", str(summary)],
        cwd=BENCH,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "NOT MEASURED" not in output, output[-5000:]
    table = [line for line in summary.read_text().splitlines() if line.startswith("| P")]
    for bar in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"):
        assert any(line.startswith(f"| {bar} |") for line in table), bar
    measured = {line.split("|")[1].strip() for line in table if "not measured" not in line and "not run" not in line}
    assert {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"} <= measured


def test_the_event_writer_benchmark_runs_in_quick_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "event_writes.py"), "--events", "6000", "--keys", "500"],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "500 keys" in done.stdout, done.stdout
    assert "many keys / one key = " in done.stdout, done.stdout

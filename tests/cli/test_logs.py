"""``keystile logs``: the verification log from the shell, as a table, as JSON, page by page, and followed."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from keystile.cli.logs import Follower
from keystile.core.clock import ManualClock, SystemClock
from keystile.core.ids import new_id
from keystile.core.models import EventFilter, VerificationEvent
from keystile.service import Keystile
from keystile.storage import open_storage
from tests.processes import stop_process

from .helpers import Shell, plain_error

T0 = 1_800_000_000_000


def event(ts: int, outcome: str = "VALID", **fields: Any) -> VerificationEvent:
    return VerificationEvent(
        id=new_id("evt", ts), ts=ts, outcome=outcome, latency_us=fields.pop("latency_us", 42), **fields
    )


def write(shell: Shell, events: Sequence[VerificationEvent]) -> None:
    """Write events into the shell's database through the event writer's storage call."""

    async def go() -> None:
        storage = await open_storage(shell.database_url, SystemClock())
        try:
            await storage.write_events(events)
        finally:
            await storage.close()

    asyncio.run(go())


@pytest.fixture
def logged(ready: Shell) -> list[VerificationEvent]:
    """30 events a minute apart: key_a (alice) VALID, key_b (bob) REVOKED every third, a NOT_FOUND every fifth."""
    events = []
    for i in range(30):
        ts = T0 + i * 60_000
        if i % 5 == 0:
            events.append(event(ts, "NOT_FOUND", api_id="api_one", ip="203.0.113.9"))
        elif i % 3 == 0:
            events.append(event(ts, "REVOKED", api_id="api_one", key_id="key_b", owner_id="bob"))
        else:
            events.append(event(ts, api_id="api_one", key_id="key_a", owner_id="alice", tags=("path=/x",)))
    write(ready, events)
    return events


def ids(events: Sequence[VerificationEvent], **where: Any) -> list[str]:
    chosen = [e for e in events if all(getattr(e, k) == v for k, v in where.items())]
    return [e.id for e in sorted(chosen, key=lambda e: e.id, reverse=True)]


def test_logs_prints_a_table_newest_first(ready: Shell, logged: list[VerificationEvent]) -> None:
    out = ready.ok("logs", "--limit", "3").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "OUTCOME", "KEY", "OWNER", "API", "IP", "LATENCY", "TAGS"]
    assert lines[2].split() == ["2027-01-15", "08:29:00.000Z", "VALID", "key_a", "alice", "api_one", "-", "42", "us",
                                "path=/x"]  # fmt: skip
    assert lines[3].split()[2:6] == ["VALID", "key_a", "alice", "api_one"]
    assert lines[4].split()[2:5] == ["REVOKED", "key_b", "bob"]
    assert "More: repeat with --cursor evt_" in lines[-1]


def test_logs_json_pages_through_every_filtered_event_once(ready: Shell, logged: list[VerificationEvent]) -> None:
    for flags, where in [
        (["--key-id", "key_a"], {"key_id": "key_a"}),
        (["--owner-id", "bob"], {"owner_id": "bob"}),
        (["--outcome", "not_found"], {"outcome": "NOT_FOUND"}),
        (["--api-id", "api_one", "--outcome", "REVOKED"], {"outcome": "REVOKED"}),
    ]:
        seen: list[str] = []
        cursor: list[str] = []
        while True:
            page = ready.json("logs", *flags, "--limit", "4", *cursor)
            seen.extend(item["id"] for item in page["items"])
            if page["next_cursor"] is None:
                break
            cursor = ["--cursor", page["next_cursor"]]
        assert seen == ids(logged, **where), flags


def test_logs_filters_by_time_as_rfc3339_or_as_a_duration_ago(ready: Shell, logged: list[VerificationEvent]) -> None:
    window = ready.json("logs", "--since", "2027-01-15T08:10:00Z", "--until", "2027-01-15T08:12:00Z")
    assert [item["ts"] for item in window["items"]] == ["2027-01-15T08:11:00.000Z", "2027-01-15T08:10:00.000Z"]
    now = int(SystemClock().now() * 1000)
    recent, older = event(now - 60_000, key_id="key_now"), event(now - 600_000, key_id="key_now")
    write(ready, [recent, older])
    assert [item["id"] for item in ready.json("logs", "--key-id", "key_now", "--since", "5m")["items"]] == [recent.id]
    assert [item["id"] for item in ready.json("logs", "--key-id", "key_now", "--until", "5m")["items"]] == [older.id]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--outcome", "ok"], "--outcome"),
        (["--since", "yesterday"], "--since"),
        (["--limit", "0"], "--limit"),
        (["--cursor", "nope"], "--cursor"),
        (["--key-id", ""], "--key-id"),
        (["--follow", "--until", "1h"], "--until"),
    ],
)
def test_bad_flags_are_usage_errors_that_name_the_flag(ready: Shell, flags: list[str], message: str) -> None:
    result = ready("logs", *flags)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_logs_on_a_database_that_was_never_initialised_says_so(shell: Shell) -> None:
    result = shell("logs")
    assert result.exit_code == 5
    assert "keystile init" in plain_error(result)


# -- --follow ---------------------------------------------------------------------------------------------------


async def test_following_prints_the_backlog_then_only_what_is_new(ks: Keystile, clock: ManualClock) -> None:
    old = [event(T0 - 60_000 + i, api_id="api_one", key_id="key_a") for i in range(5)]
    await ks.storage.write_events(old)
    follower = Follower(ks, EventFilter(key_id="key_a"), backlog=3, lag_ms=10_000, now_ms=lambda: T0)

    assert [e.id for e in await follower.poll()] == [e.id for e in old[-3:]]
    assert await follower.poll() == []

    new = [event(T0 + 500 + i, api_id="api_one", key_id="key_a") for i in range(1500)]
    other = [event(T0 + 600, api_id="api_one", key_id="key_b")]
    await ks.storage.write_events(new + other)
    assert [e.id for e in await follower.poll()] == [e.id for e in new]
    assert await follower.poll() == []


async def test_following_shows_an_event_written_late_within_the_lag(ks: Keystile) -> None:
    now = [T0]
    follower = Follower(ks, EventFilter(), backlog=10, lag_ms=10_000, now_ms=lambda: now[0])
    assert await follower.poll() == []
    first = event(T0 + 5_000)
    await ks.storage.write_events([first])
    now[0] = T0 + 5_000
    assert await follower.poll() == [first]

    # Another process's batch lands later, holding events older than the newest one printed.
    late = event(T0 + 1_000)
    too_late = event(T0 + 5_000 - 10_001)
    await ks.storage.write_events([late, too_late])
    assert await follower.poll() == [late]
    assert await follower.poll() == []


class Following:
    """``keystile logs --follow`` running in its own process, its lines read as they come."""

    def __init__(self, shell: Shell, stderr_path: Path, *args: str) -> None:
        self.stderr_path = stderr_path
        with stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "keystile", "logs", "--follow", *args],
                env={**os.environ, **shell.env},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        for line in self.process.stdout or ():
            self.lines.put(line)

    def next(self) -> Any:
        return json.loads(self.lines.get(timeout=20))

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: its exit code and what it said on stderr."""
        code = stop_process(self.process, signal.SIGINT, timeout=20)
        self._pump_thread.join(timeout=20)  # every line it printed is in ``lines``
        return code, self.stderr_path.read_text()


@pytest.fixture
def follow(ready: Shell, tmp_path: Path) -> Iterator[Callable[..., Following]]:
    """Starts ``keystile logs --follow ARGS``; every one started is stopped at the end, whatever happened."""
    started: list[Following] = []

    def start(*args: str) -> Following:
        started.append(Following(ready, tmp_path / f"follow-{len(started)}.stderr", *args))
        return started[-1]

    yield start
    for following in started:
        stop_process(following.process, signal.SIGTERM, timeout=5)
        assert following.process.stdout is not None
        following.process.stdout.close()


def test_logs_follow_prints_new_events_as_they_are_written_until_interrupted(
    ready: Shell, follow: Callable[..., Following]
) -> None:
    write(ready, [event(T0, api_id="api_one", key_id="key_a")])
    following = follow("--json", "--key-id", "key_a")

    assert following.next()["ts"] == "2027-01-15T08:00:00.000Z"
    now = int(SystemClock().now() * 1000)
    fresh = [event(now + i, api_id="api_one", key_id="key_a") for i in range(3)]
    write(ready, [*fresh, event(now, api_id="api_one", key_id="key_b")])
    assert [following.next()["id"] for _ in fresh] == [e.id for e in fresh]

    code, stderr = following.interrupt()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert following.lines.empty()

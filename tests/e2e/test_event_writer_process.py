"""The event writer process beside a real ``keystile serve`` (SPEC O1; ``KEYSTILE_EVENTS_WRITER=process``):
started with the first batch, replaced when it is killed (what it held is handed to the next one, nothing lost),
never left behind when its server process is killed, and stopped with the server."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .server import Server, serve

pytestmark = pytest.mark.e2e

DEADLINE_S = 30.0


def processes() -> dict[int, tuple[int, str]]:
    """Every process: pid → (parent pid, command line)."""
    found: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry)] = (parent, command)
    return found


def writers_of(server: Server) -> dict[int, int]:
    """The event writer processes under ``server``: pid → its parent (the worker that started it)."""
    table = processes()

    def under(pid: int) -> bool:
        while pid > 1 and pid in table:
            if pid == server.process.pid:
                return True
            pid = table[pid][0]
        return False

    return {
        pid: parent
        for pid, (parent, command) in table.items()
        if "-m keystile.cli.eventwriter" in command and under(pid)
    }


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def written(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "keystile_events_written_total":
                return sample.value
    raise AssertionError("no keystile_events_written_total in /metrics")


def wait_until(what: str, check: object) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {DEADLINE_S:g} s for {what}"
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = serve(tmp_path, {"KEYSTILE_EVENTS_FLUSH_MS": "100", "KEYSTILE_EVENTS_WRITER": "process"})
    yield running
    running.stop()


def test_the_writer_process_is_replaced_when_killed_and_never_outlives_its_server(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.root_key()}"}
    api = httpx.post(f"{server.url}/v1/apis", json={"name": "writer"}, headers=auth, timeout=10).json()
    created = httpx.post(f"{server.url}/v1/apis/{api['id']}/keys", json={}, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    key = created.json()["key"]

    def verify(times: int) -> None:
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as client:
            for _ in range(times):
                assert client.post("/v1/keys/verify", json={"key": key}).json()["code"] == "VALID"

    verify(20)
    wait_until("20 events written", lambda: written(server) == 20)
    first = writers_of(server)
    assert len(first) == 1, first  # one writer for the one server process
    ((pid, worker),) = first.items()
    assert worker != server.process.pid  # started by the worker that serves, not granian's main process

    os.kill(pid, signal.SIGKILL)
    verify(10)
    wait_until("the 10 events recorded after the kill written by a new writer", lambda: written(server) == 30)
    second = writers_of(server)
    assert len(second) == 1
    assert pid not in second
    assert not alive(pid)

    logs = httpx.get(f"{server.url}/v1/logs", params={"api_id": api["id"], "limit": 100}, headers=auth, timeout=10)
    assert logs.status_code == 200, logs.text
    assert len(logs.json()["items"]) == 30  # nothing lost, nothing twice

    # Its server process killed, the writer is not left behind.
    ((pid, worker),) = second.items()
    os.kill(worker, signal.SIGKILL)
    wait_until("the writer of a killed server process to exit", lambda: not alive(pid))


def restarted_logs(tmp_path: Path, api_id: str, auth: dict[str, str]) -> int:
    """How many events a server started again on ``tmp_path``'s database lists for ``api_id``."""
    again = serve(tmp_path, {"KEYSTILE_EVENTS_WRITER": "process"}, name="again")
    try:
        logs = httpx.get(f"{again.url}/v1/logs", params={"api_id": api_id}, headers=auth, timeout=10)
        assert logs.status_code == 200, logs.text
        return len(logs.json()["items"])
    finally:
        again.stop()


def test_a_stop_stops_the_server_and_its_writer_and_loses_nothing(tmp_path: Path) -> None:
    # Nothing written before the stop.
    running = serve(tmp_path, {"KEYSTILE_EVENTS_FLUSH_MS": "3600000", "KEYSTILE_EVENTS_WRITER": "process"})
    try:
        auth = {"Authorization": f"Bearer {running.root_key()}"}
        api = httpx.post(f"{running.url}/v1/apis", json={"name": "stop"}, headers=auth, timeout=10).json()
        key = httpx.post(f"{running.url}/v1/apis/{api['id']}/keys", json={}, headers=auth, timeout=10).json()["key"]
        for _ in range(7):
            httpx.post(f"{running.url}/v1/keys/verify", json={"key": key}, headers=auth, timeout=10)
        assert written(running) == 0
        assert writers_of(running) == {}  # started with the first batch
        os.kill(running.process.pid, signal.SIGINT)
        assert running.process.wait(timeout=60) == 0, running.output()
    finally:
        running.stop()
    assert restarted_logs(tmp_path, api["id"], auth) == 7


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM), (signal.SIGINT, signal.SIGINT)],
    ids=["ctrl-c", "group-sigterm", "sigint-then-sigterm", "ctrl-c-twice"],
)
def test_a_stop_by_signals_to_the_whole_process_group_ends_every_process(
    tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    # Ctrl-C in a terminal, or a service manager stopping a control group: the worker gets the signal from there
    # and from granian's main process; the writer process ignores it and ends when its server does.
    running = serve(tmp_path, {"KEYSTILE_EVENTS_FLUSH_MS": "100", "KEYSTILE_EVENTS_WRITER": "process"})
    try:
        auth = {"Authorization": f"Bearer {running.root_key()}"}
        api = httpx.post(f"{running.url}/v1/apis", json={"name": "group"}, headers=auth, timeout=10).json()
        key = httpx.post(f"{running.url}/v1/apis/{api['id']}/keys", json={}, headers=auth, timeout=10).json()["key"]
        with httpx.Client(base_url=running.url, headers=auth, timeout=10) as client:
            for _ in range(7):
                client.post("/v1/keys/verify", json={"key": key})
            wait_until("the first 7 events written", lambda: written(running) == 7)
            writers = writers_of(running)
            assert len(writers) == 1, writers
            for _ in range(5):  # likely still buffered when the signal comes
                client.post("/v1/keys/verify", json={"key": key})
        for number in signals:
            os.killpg(running.process.pid, number)
            time.sleep(0.01)
        assert running.process.wait(timeout=30) == 0, running.output()
        wait_until("the writer process to end", lambda: not any(alive(pid) for pid in writers))
    finally:
        running.stop()
    assert restarted_logs(tmp_path, api["id"], auth) == 12

"""``keystile serve`` writes JSON lines on stderr, its own and granian's, in the main process and the worker;
management requests carry their request ids; no key reaches them (end to end, a real server process)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ROOT_KEY_RE = re.compile(r"\bks_root_[0-9A-Za-z]{38}\b")
START_TIMEOUT_S = 60.0


class Serve:
    """``keystile serve`` in ``workdir`` on a free port, its stdout and stderr kept in files."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.stdout_path, self.stderr_path = workdir / "serve.stdout", workdir / "serve.stderr"
        env = {**os.environ, "KEYSTILE_PORT": str(port), "KEYSTILE_DATA_DIR": str(workdir / "data")}
        env.pop("KEYSTILE_DATABASE_URL", None)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [str(BIN / "keystile"), "serve"], cwd=workdir, env=env, stdout=out, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # polling a starting process, not waiting for time to pass
            if self.process.poll() is not None:
                raise AssertionError(f"keystile serve exited {self.process.returncode}:\n{self.stderr()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"keystile serve did not answer:\n{self.stderr()}")
            time.sleep(0.1)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        """Stop the server as Ctrl-C would; returns its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Serve]:
    running = Serve(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_serve_logs_json_lines_with_request_ids_and_no_key(server: Serve) -> None:
    (root_key,) = ROOT_KEY_RE.findall(server.stdout())
    auth = {"Authorization": f"Bearer {root_key}"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        api = http.post("/v1/apis", json={"name": "logged"}, headers=auth).json()
        key: str = http.post(f"/v1/apis/{api['id']}/keys", json={"name": "k"}, headers=auth).json()["key"]
        traced = http.get("/v1/apis", headers={**auth, "X-Request-Id": "trace-e2e-1"})
        pasted = http.get(f"/v1/keys/{key}", headers=auth)
        as_header = http.get("/v1/apis", headers={"X-Api-Key": key, "Authorization": f"Bearer {key}"})
        verified = [http.post("/v1/keys/verify", json={"key": key}, headers=auth) for _ in range(3)]
    assert (traced.status_code, pasted.status_code, as_header.status_code) == (200, 404, 401)
    assert all(response.json()["code"] == "VALID" for response in verified)
    assert server.stop() == 0

    stderr = server.stderr()
    lines: list[dict[str, Any]] = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line), line
    assert any(line["logger"].startswith("granian") for line in lines)  # granian's own lines, as JSON
    access = [line for line in lines if line["logger"] == "keystile.access"]
    assert [(line["method"], line["path"], line["status"]) for line in access] == [
        ("POST", "/v1/apis", 201),
        ("POST", "/v1/apis/{api_id}/keys", 201),
        ("GET", "/v1/apis", 200),
        ("GET", "/v1/keys/{key_id}", 404),
        ("GET", "/v1/apis", 401),
    ]  # and none for the verifications, nor the health probe
    assert [line["request_id"] for line in access][2:] == [
        "trace-e2e-1",
        pasted.headers["x-request-id"],
        as_header.headers["x-request-id"],
    ]
    assert len({line["root_key_id"] for line in access[:4]}) == 1
    assert access[0]["root_key_id"].startswith("rk_")
    assert access[4]["root_key_id"] is None
    assert key not in stderr
    assert root_key not in stderr
    assert key not in server.stdout()

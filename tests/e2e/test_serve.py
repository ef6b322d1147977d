"""A real `keystile serve` over a real socket: limits, restarts, and the CLI and server sharing one database."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .server import Server, cli, post_many, serve

pytestmark = pytest.mark.e2e

TTL_MS = 300


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = serve(tmp_path, {"KEYSTILE_CACHE_TTL_MS": str(TTL_MS)})
    yield running
    running.stop()


def _auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.root_key()}"}


def test_a_body_over_the_limit_is_refused_with_413_over_a_real_socket(server: Server) -> None:
    body = b'{"key": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    answer = httpx.post(f"{server.url}/v1/keys/verify", content=body, headers=_auth(server), timeout=10)
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "payload_too_large"

    answer = httpx.post(f"{server.url}/v1/apis", content=body, headers=_auth(server), timeout=10)
    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"


def test_headers_over_the_limit_are_refused_with_431_over_a_real_socket(server: Server) -> None:
    headers = {**_auth(server), "X-Padding": "p" * (17 * 1024)}
    for path in ("/v1/apis", "/v1/keys/verify"):
        answer = httpx.request("POST", f"{server.url}{path}", json={}, headers=headers, timeout=10)
        assert answer.status_code == 431
        assert answer.json()["code"] == "headers_too_large"


def test_errors_over_a_real_socket_are_problems_without_internals(server: Server) -> None:
    answer = httpx.post(f"{server.url}/v1/apis", content=b"{not json", headers=_auth(server))
    assert answer.status_code == 400
    problem = answer.json()
    assert problem["code"] == "invalid_json"
    assert "Traceback" not in answer.text
    assert answer.headers["x-request-id"] == problem["request_id"]
    assert httpx.get(f"{server.url}/v1/apis").json()["code"] == "missing_root_key"


def test_a_restart_keeps_the_data_and_prints_no_new_root_key(tmp_path: Path) -> None:
    first = serve(tmp_path, name="first")
    try:
        root_key = first.root_key()
        api_id = httpx.post(
            f"{first.url}/v1/apis", json={"name": "kept"}, headers={"Authorization": f"Bearer {root_key}"}
        ).json()["id"]
    finally:
        assert first.stop() == 0

    second = serve(tmp_path, name="second")
    try:
        assert "ks_root_" not in second.stdout()
        assert "root key" in second.stdout().lower()  # it says one exists (and how to make another)
        answer = httpx.get(f"{second.url}/v1/apis/{api_id}", headers={"Authorization": f"Bearer {root_key}"})
        assert answer.status_code == 200
        assert answer.json()["name"] == "kept"
    finally:
        second.stop()


def test_a_key_revoked_with_the_cli_stops_verifying_within_the_cache_ttl(server: Server, tmp_path: Path) -> None:
    api = json.loads(cli("apis", "create", "shared", "--json", workdir=tmp_path))
    created = json.loads(cli("keys", "create", api["id"], "--json", workdir=tmp_path))
    verify = {"key": created["key"]}

    answer = httpx.post(f"{server.url}/v1/keys/verify", json=verify, headers=_auth(server))
    assert answer.json()["code"] == "VALID"

    cli("keys", "revoke", created["id"], workdir=tmp_path)
    revoked_at = time.monotonic()
    # SPEC V6: without notifications, another process's change is seen within the cache TTL.
    while True:
        code = httpx.post(f"{server.url}/v1/keys/verify", json=verify, headers=_auth(server)).json()["code"]
        waited = time.monotonic() - revoked_at
        if code == "REVOKED":
            break
        assert waited < TTL_MS / 1000 + 1.0, f"still {code} after {waited:.2f} s"
        time.sleep(0.02)


def test_the_server_stops_cleanly_on_interrupt(tmp_path: Path) -> None:
    running = serve(tmp_path)
    assert running.stop() == 0
    assert "Traceback" not in running.stderr()


def test_the_first_serve_makes_private_files_whatever_the_umask(tmp_path: Path) -> None:
    before = os.umask(0)  # inherited by the server process
    try:
        running = serve(tmp_path)
    finally:
        os.umask(before)
    try:
        created = httpx.post(f"{running.url}/v1/apis", json={"name": "written"}, headers=_auth(running))
        assert created.status_code == 201
        data = tmp_path / "keystile-data"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in data.iterdir()} == {
            "keystile.db": 0o600,
            "keystile.db-wal": 0o600,
            "keystile.db-shm": 0o600,
            "master.key": 0o600,
        }
    finally:
        running.stop()


def test_the_cli_and_the_server_writing_at_once_make_one_audit_chain(server: Server, tmp_path: Path) -> None:
    # SPEC A2 on SQLite: each process's write transaction holds the database's write lock, so entries written
    # by the server and by `keystile` commands at the same time still follow one another.
    api = httpx.post(f"{server.url}/v1/apis", json={"name": "audited"}, headers=_auth(server)).json()
    bodies = [json.dumps({"name": f"key {i}"}).encode() for i in range(60)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        commands = [pool.submit(cli, "apis", "create", f"cli {i}", workdir=tmp_path) for i in range(3)]
        answers = asyncio.run(post_many(server.url, f"/v1/apis/{api['id']}/keys", bodies, _auth(server), 4))
        for command in commands:
            command.result()
    assert [status for status, _ in answers] == [201] * 60

    report = json.loads(cli("audit", "verify", "--json", workdir=tmp_path))

    # The root key, the API, 60 keys and 3 APIs from the CLI.
    assert (report["ok"], report["checked"], report["last_checked"]["seq"]) == (True, 65, 65), report

"""Recoverable keys with real servers (SPEC K3): the master key rotated with ``keystile master-key rotate`` while a
server runs, the old master key then opening no data key, and a server started with a wrong master key that
starts, verifies keys and refuses only to read them back."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystile.core.clock import ManualClock
from keystile.service import sealing
from keystile.service.vault import read_master_key_file
from keystile.storage import open_storage

from .server import ROOT_KEY_RE, cli, serve

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'keystile.db'}"
        return
    url: str = request.getfixturevalue("fresh_pg_url")
    yield url


async def _data_keys(database: str) -> list[tuple[str, str, bytes]]:
    storage = await open_storage(database, ManualClock())
    try:
        rows = await storage.driver.fetchall("SELECT id, master_id, wrapped FROM data_keys")
    finally:
        await storage.close()
    return [(row["id"], row["master_id"], bytes(row["wrapped"])) for row in rows]


def test_a_rotation_while_a_server_runs_and_a_server_with_the_old_key(database: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"KEYSTILE_DATA_DIR": str(data), "KEYSTILE_DATABASE_URL": database}
    [root_key] = ROOT_KEY_RE.findall(cli("init", workdir=tmp_path, env=env))
    auth = {"Authorization": f"Bearer {root_key}"}
    old_file = tmp_path / "old.key"
    shutil.copy(data / "master.key", old_file)
    old_master = read_master_key_file(old_file)

    def call(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{url}{path}", headers=auth, timeout=10, **kwargs)

    def read_back(url: str, created: dict[str, Any]) -> httpx.Response:
        return call(url, "GET", f"/v1/keys/{created['id']}/plaintext")

    running = serve(tmp_path, env, name="running")
    try:
        api = call(running.url, "POST", "/v1/apis", json={"name": "vault", "recoverable": True}).json()
        keys = [call(running.url, "POST", f"/v1/apis/{api['id']}/keys", json={}).json() for _ in range(3)]
        assert [read_back(running.url, key).json()["key"] for key in keys] == [key["key"] for key in keys]

        new_file = tmp_path / "new.key"
        created = json.loads(cli("master-key", "create", str(new_file), "--json", workdir=tmp_path, env=env))
        assert oct(new_file.stat().st_mode & 0o777) == "0o600"
        rotated = cli(
            "master-key", "rotate", "--new-key-file", str(new_file), "--batch-size", "1", workdir=tmp_path, env=env
        )
        assert f"Re-wrapped 1 data keys under master key {created['master_key_id']}" in rotated

        # The running server keeps reading keys back; the old master key now opens no data key.
        assert read_back(running.url, keys[0]).json()["key"] == keys[0]["key"]
        rows = asyncio.run(_data_keys(database))
        assert {master_id for _, master_id, _ in rows} == {created["master_key_id"]}
        for data_key_id, _, wrapped in rows:
            with pytest.raises(sealing.Unopenable):
                sealing.unwrap_data_key(old_master, data_key_id, wrapped)

        # A server started with the old master key starts, verifies, and refuses only to read keys back.
        stale = serve(tmp_path, {**env, "KEYSTILE_MASTER_KEY_FILE": str(old_file)}, name="stale")
        try:
            verified = call(stale.url, "POST", "/v1/keys/verify", json={"key": keys[1]["key"]}).json()
            assert verified["code"] == "VALID"
            for _ in range(2):
                refused = read_back(stale.url, keys[1])
                assert refused.status_code == 503
                assert refused.json()["code"] == "master_key_unavailable"
                assert keys[1]["key"] not in refused.text
        finally:
            assert stale.stop() == 0
        said = [line for line in stale.stderr().splitlines() if "recoverable keys are unavailable" in line]
        assert len(said) == 1, stale.stderr()
        assert "does not open" in said[0]

        # The new key goes where servers read it; a server started now reads every key back.
        os.replace(new_file, data / "master.key")
        fresh = serve(tmp_path, env, name="fresh")
        try:
            for key in keys:
                assert read_back(fresh.url, key).json() == {"key_id": key["id"], "key": key["key"]}
            rerolled = call(fresh.url, "POST", f"/v1/keys/{keys[2]['id']}/reroll", json={}).json()
            assert read_back(fresh.url, rerolled).json()["key"] == rerolled["key"]
        finally:
            assert fresh.stop() == 0
        audit = call(running.url, "GET", "/v1/audit", params={"action": "master_key.rotate"}).json()["items"]
        assert [entry["changes"]["rewrapped"] for entry in audit] == [1]
        assert audit[0]["actor"] == "cli"
    finally:
        assert running.stop() == 0
    output = "".join(server.stdout() + server.stderr() for server in (running, stale, fresh))
    for secret in (old_file.read_text().strip(), (data / "master.key").read_text().strip()):
        assert secret not in output
    assert not any(key["key"] in output for key in keys)

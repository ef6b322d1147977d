"""Import of existing keys against a real server (SPEC R4, K2): what was imported over HTTP or by the CLI
verifies over HTTP, through ``POST /v1/keys/verify`` and forward auth alike.

The CLI imports a JSON-lines file (a third plain keys in a foreign format, a third hex digests, a third base64
digests) straight into the server's database, in batches with a progress bar; running it again skips every key;
a bad line in the middle is reported by its line number with where to resume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystile.core import keys as keyformat

from .server import BIN, Server, cli, serve

pytestmark = pytest.mark.e2e
LINES = 3000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'keystile.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data"), "KEYSTILE_DATABASE_URL": url}
    cli("init", "--root-key-file", str(tmp_path / "root.key"), workdir=tmp_path, env=env)
    server = serve(tmp_path, env)
    try:
        yield server, env
    finally:
        assert server.stop() == 0


def _root(tmp_path: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {(tmp_path / 'root.key').read_text().strip()}"}


def kong_key(i: int) -> str:
    """A key in a format of another system (Kong stores key-auth credentials as any string)."""
    return f"kong_{hashlib.md5(str(i).encode()).hexdigest()}"  # noqa: S324 (a made-up key, not a digest)


def entry(i: int) -> dict[str, Any]:
    key = kong_key(i)
    digest = hashlib.sha256(key.encode()).digest()
    if i % 3 == 0:
        return {"key": key, "name": f"kong {i}", "owner_id": f"user_{i}"}
    if i % 3 == 1:
        return {"hash": digest.hex(), "permissions": ["docs.read"]}
    return {"hash": {"value": base64.b64encode(digest).decode(), "variant": "sha256_base64"}}


def verify(server: Server, headers: dict[str, str], key: str, api_id: str) -> str:
    answer = httpx.post(f"{server.url}/v1/keys/verify", json={"key": key, "api_id": api_id}, headers=headers)
    assert answer.status_code == 200
    return str(answer.json()["code"])


def forward_auth(server: Server, key: str, api_id: str) -> int:
    return httpx.get(f"{server.url}/v1/auth?api_id={api_id}", headers={"Authorization": f"Bearer {key}"}).status_code


def keys_import(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "keystile"), "keys", "import", *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_keys_imported_over_http_verify_over_http(deployment: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    server, _ = deployment
    root = _root(tmp_path)
    api_id = httpx.post(f"{server.url}/v1/apis", json={"name": "kong", "prefix": "acme"}, headers=root).json()["id"]
    plain = "a1b2c3d4e5f6a7b8c9d0e1f2"
    unkey = "uk_3ZaB9xQp7LmN2vR8sT4wY6"
    real = keyformat.generate("acme")
    unchecked = real[:-1] + ("0" if real[-1] != "0" else "1")  # Keystile's shape, a failing checksum
    assert verify(server, root, unchecked, api_id) == "NOT_FOUND"
    body = {
        "keys": [
            {"key": plain, "name": "from kong"},
            {"hash": {"value": base64.b64encode(hashlib.sha256(unkey.encode()).digest()).decode(),
                      "variant": "sha256_base64"}},
            {"hash": hashlib.sha256(unchecked.encode()).hexdigest()},
        ]
    }  # fmt: skip

    answer = httpx.post(f"{server.url}/v1/apis/{api_id}/keys/import", json=body, headers=root)

    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"] == 3
    for key in (plain, unkey, unchecked):
        assert verify(server, root, key, api_id) == "VALID"
        assert forward_auth(server, key, api_id) == 200
    again = httpx.post(f"{server.url}/v1/apis/{api_id}/keys/import", json=body, headers=root).json()
    assert (again["imported"], again["skipped"]) == (0, 3)


def test_the_cli_imports_a_file_of_every_kind_in_batches_and_again_skips_it(
    deployment: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, env = deployment
    root = _root(tmp_path)
    api_id = httpx.post(f"{server.url}/v1/apis", json={"name": "kong"}, headers=root).json()["id"]
    path = tmp_path / "keys.jsonl"
    path.write_text("".join(json.dumps(entry(i)) + "\n" for i in range(LINES)))

    first = keys_import(tmp_path, env, str(path), "--api-id", api_id)

    assert first.returncode == 0, first.stderr
    assert f"Imported {LINES:,} keys, skipped 0" in first.stdout
    assert "━" in first.stderr, "a progress bar on stderr"
    for i in (0, 1, 2, 1500, 1501, 1502, LINES - 3, LINES - 2, LINES - 1):
        assert verify(server, root, kong_key(i), api_id) == "VALID", i
    assert forward_auth(server, kong_key(4), api_id) == 200
    assert verify(server, root, kong_key(LINES), api_id) == "NOT_FOUND"

    again = keys_import(tmp_path, env, str(path), "--api-id", api_id, "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["imported"], summary["skipped"], summary["failed"]) == (0, LINES, 0)


def test_a_bad_line_is_reported_with_where_to_resume(deployment: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    server, env = deployment
    root = _root(tmp_path)
    api_id = httpx.post(f"{server.url}/v1/apis", json={"name": "kong"}, headers=root).json()["id"]
    lines = [json.dumps(entry(i)) for i in range(LINES)]
    lines[1499] = json.dumps({"hash": "not-a-digest"})  # line 1500
    path = tmp_path / "keys.jsonl"
    path.write_text("\n".join(lines) + "\n")

    failed = keys_import(tmp_path, env, str(path), "--api-id", api_id)

    assert failed.returncode == 2
    assert "Error: line 1500 (hash):" in failed.stderr
    assert "Imported 1,000 keys" in failed.stdout
    assert "--start-line 1001" in failed.stdout
    assert "Traceback" not in failed.stderr
    assert verify(server, root, kong_key(999), api_id) == "VALID"
    assert verify(server, root, kong_key(1000), api_id) == "NOT_FOUND", "the failed batch imported nothing"

    lines[1499] = json.dumps(entry(1499))
    path.write_text("\n".join(lines) + "\n")
    resumed = keys_import(tmp_path, env, str(path), "--api-id", api_id, "--start-line", "1001")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Imported {LINES - 1000:,} keys, skipped 0" in resumed.stdout
    assert verify(server, root, kong_key(1499), api_id) == "VALID"

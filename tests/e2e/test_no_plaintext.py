"""No plain-text key anywhere but the one answer that creates it (issue 2, Done when 5; SPEC K3).

Keys are made through every path (``keystile init``, the HTTP API single and bulk, HTTP root keys, the CLI with
tables, with ``--json`` and with ``--root-key-file``), used, and sent in bad requests. Recoverable keys (single,
bulk and rerolled) are also read back once each. Then the database (the SQLite files, or a ``pg_dump``), the
server's output, the audit log, every other HTTP answer and every other command's output are searched for them,
and the database and the server's output for the master key.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.availability import require_tool

from .server import BIN, ROOT_KEY_RE, Server, cli, serve

pytestmark = pytest.mark.e2e


class Seen:
    """Everything that left Keystile, by channel, so that each key's appearances can be counted."""

    def __init__(self) -> None:
        self.http: list[str] = []
        self.cli: list[str] = []

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        answer = httpx.request(method, url, timeout=10, **kwargs)
        self.http.append(answer.text)
        return answer

    def run(self, *args: str, workdir: Path, env: dict[str, str], stdin: str | None = None) -> str:
        out = cli(*args, workdir=workdir, env=env, stdin=stdin)
        self.cli.append(out)
        return out


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'keystile.db'}"
        return
    url: str = request.getfixturevalue("fresh_pg_url")
    yield url


def _dump(database: str, tmp_path: Path) -> bytes:
    if database.startswith("sqlite"):
        files = sorted(path for path in (tmp_path / "data").iterdir() if path.name != "master.key")
        assert [path.name for path in files][:1] == ["keystile.db"]
        return b"".join(path.read_bytes() for path in files)
    require_tool("pg_dump")
    done = subprocess.run(["pg_dump", "--no-owner", database], capture_output=True, check=True, timeout=60)
    return done.stdout


def test_plain_text_keys_appear_only_in_the_answer_that_created_them(database: str, tmp_path: Path) -> None:
    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data"), "KEYSTILE_DATABASE_URL": database}
    seen = Seen()
    created_by_cli: list[str] = []
    created_by_http: list[str] = []

    init_out = seen.run("init", workdir=tmp_path, env=env)
    [root_key] = ROOT_KEY_RE.findall(init_out)
    created_by_cli.append(root_key)
    server: Server = serve(tmp_path, env)
    try:
        auth = {"Authorization": f"Bearer {root_key}"}
        api_id = seen.call("POST", f"{server.url}/v1/apis", json={"name": "leaks"}, headers=auth).json()["id"]

        one = seen.call("POST", f"{server.url}/v1/apis/{api_id}/keys", json={"name": "one"}, headers=auth).json()
        bulk = seen.call(
            "POST", f"{server.url}/v1/apis/{api_id}/keys/bulk", json={"keys": [{}, {}, {}]}, headers=auth
        ).json()["items"]
        rk = seen.call("POST", f"{server.url}/v1/root-keys", json={"permissions": ["keys.*"]}, headers=auth).json()
        created_by_http += [one["key"], *(item["key"] for item in bulk), rk["key"]]

        # Recoverable keys: stored sealed, read back once each (SPEC K3).
        vault = {"name": "vault", "recoverable": True}
        vault_id = seen.call("POST", f"{server.url}/v1/apis", json=vault, headers=auth).json()["id"]
        sealed = seen.call("POST", f"{server.url}/v1/apis/{vault_id}/keys", json={}, headers=auth).json()
        sealed_bulk = seen.call(
            "POST", f"{server.url}/v1/apis/{vault_id}/keys/bulk", json={"keys": [{}, {}]}, headers=auth
        ).json()["items"]
        rerolled = seen.call("POST", f"{server.url}/v1/keys/{sealed['id']}/reroll", json={}, headers=auth).json()
        recoverable = [sealed, *sealed_bulk, rerolled]
        for created in recoverable:
            read = seen.call("GET", f"{server.url}/v1/keys/{created['id']}/plaintext", headers=auth)
            assert read.json() == {"key_id": created["id"], "key": created["key"]}
        recovered_by_http = [created["key"] for created in recoverable]

        table = seen.run("keys", "create", api_id, "--name", "from cli", workdir=tmp_path, env=env)
        as_json = json.loads(seen.run("keys", "create", api_id, "--json", workdir=tmp_path, env=env))
        cli_root = seen.run("root-keys", "create", "--permission", "keys.read", workdir=tmp_path, env=env)
        key_file = tmp_path / "root.key"
        seen.run(
            "root-keys", "create", "--permission", "*", "--root-key-file", str(key_file), workdir=tmp_path, env=env
        )
        from_file = key_file.read_text().strip()
        created_by_cli += [
            *(word for word in table.split() if word.startswith("ks_") and len(word) > 30),
            as_json["key"],
            *ROOT_KEY_RE.findall(cli_root),
        ]
        assert len(created_by_cli) == 4, created_by_cli
        every_key = [*created_by_cli, *created_by_http, *recovered_by_http, from_file]

        # Use them, change them, and send them where they do not belong.
        for key in every_key:
            seen.call("POST", f"{server.url}/v1/keys/verify", json={"key": key}, headers=auth)
            seen.call("POST", f"{server.url}/v1/keys/verify", json={"key": key, "bogus": 1}, headers=auth)
            seen.call("POST", f"{server.url}/v1/keys/verify", json={"key": key, "ip": "not-an-ip"}, headers=auth)
            seen.call("POST", f"{server.url}/v1/keys/verify", json={"key": key, "permissions": "a AND"}, headers=auth)
            seen.call("GET", f"{server.url}/v1/keys/{key}", headers=auth)
            seen.call("GET", f"{server.url}/v1/apis", headers={"Authorization": f"Bearer {key}"})
            seen.call("GET", f"{server.url}/nowhere/{key}", headers=auth)
            # Pasted into fields that are stored with the verification's event.
            pasted = {"key": "ks_typo", "api_id": key, "tags": [key, f"user={key}"]}
            seen.call("POST", f"{server.url}/v1/keys/verify", json=pasted, headers=auth)
            bearer = {"Authorization": f"Bearer {key}"}
            seen.call("GET", f"{server.url}/v1/auth", params={"api_id": key}, headers=bearer)
            seen.call("POST", f"{server.url}/v1/keys/verify", json={"key": key, "tags": [key]}, headers=auth)
        seen.run("keys", "verify", "-", workdir=tmp_path, env=env, stdin=one["key"])
        seen.call("PATCH", f"{server.url}/v1/keys/{one['id']}", json={"meta": {"plan": "pro"}}, headers=auth)
        seen.call("POST", f"{server.url}/v1/keys/{bulk[0]['id']}/revoke", headers=auth)
        seen.call("DELETE", f"{server.url}/v1/keys/{bulk[1]['id']}", headers=auth)
        seen.call("POST", f"{server.url}/v1/root-keys/{rk['id']}/revoke", headers=auth)
        seen.run("keys", "list", api_id, workdir=tmp_path, env=env)
        seen.run("keys", "show", as_json["id"], "--json", workdir=tmp_path, env=env)

        audit: list[dict[str, Any]] = []
        params = {"limit": "5"}
        while True:
            page = seen.call("GET", f"{server.url}/v1/audit", params=params, headers=auth).json()
            audit += page["items"]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert {entry["action"] for entry in audit} >= {
            "key.create",
            "key.update",
            "key.revoke",
            "key.delete",
            "key.reroll",
            "key.decrypt",
        }
    finally:
        assert server.stop() == 0

    stored = _dump(database, tmp_path)
    audit_text = json.dumps(audit)
    server_output = server.stdout() + server.stderr()
    for key in every_key:
        assert key.encode() not in stored, "a plain-text key is in the database"
        assert key not in audit_text, "a plain-text key is in the audit log"
        assert key not in server_output, "a plain-text key is in the server's output"
    for key in created_by_http:
        echoes = [text[:200] for text in seen.http if key in text]
        assert len(echoes) == 1, f"an HTTP key appears in more than its creation: {echoes}"
        assert not any(key in text for text in seen.cli)
    for key in recovered_by_http:
        echoes = [text[:200] for text in seen.http if key in text]
        assert len(echoes) == 2, f"a recoverable key appears in more than its creation and its reading: {echoes}"
    master = (tmp_path / "data" / "master.key").read_text().strip()
    assert master.encode() not in stored, "the master key is in the database"
    assert master not in server_output, "the master key is in the server's output"
    assert not any(master in text for text in [*seen.http, *seen.cli])
    for key in created_by_cli:
        assert sum(text.count(key) for text in seen.cli) == 1, "a CLI key appears in more than its creation"
        assert not any(key in text for text in seen.http)
    assert not any(from_file in text for text in [*seen.http, *seen.cli])
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_imported_plain_keys_appear_nowhere(database: str, tmp_path: Path) -> None:
    # SPEC R4, K3: a key given in plain text to an import is hashed and forgotten: no answer, output, log line,
    # audit entry or database row holds it, whether the import succeeded, failed on another entry or clashed.
    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data"), "KEYSTILE_DATABASE_URL": database}
    seen = Seen()
    [root_key] = ROOT_KEY_RE.findall(seen.run("init", workdir=tmp_path, env=env))
    over_http = [f"kong-http-{i}-a1b2c3d4e5f6a7b8" for i in range(3)]
    from_jsonl = [f"sk_live_jsonl{i}Zq8Xw2Lm5Np" for i in range(3)]
    from_csv = [f"csv-key-{i}-0f1e2d3c4b5a6978" for i in range(3)]
    server: Server = serve(tmp_path, env)
    try:
        auth = {"Authorization": f"Bearer {root_key}"}
        api_id = seen.call("POST", f"{server.url}/v1/apis", json={"name": "import"}, headers=auth).json()["id"]
        other = seen.call("POST", f"{server.url}/v1/apis", json={"name": "other"}, headers=auth).json()["id"]
        url = f"{server.url}/v1/apis/{api_id}/keys/import"
        bad = {"keys": [*({"key": key} for key in over_http), {"hash": "zz"}]}
        assert seen.call("POST", url, json=bad, headers=auth).status_code == 400
        assert seen.call("POST", url, json={"keys": [{"key": k} for k in over_http]}, headers=auth).status_code == 200
        clash = {"keys": [{"key": over_http[0], "name": "again"}]}
        assert seen.call("POST", url.replace(api_id, other), json=clash, headers=auth).status_code == 409
        jsonl = tmp_path / "keys.jsonl"
        jsonl.write_text("".join(json.dumps({"key": key}) + "\n" for key in from_jsonl) + '{"key": 5}\n')
        (tmp_path / "keys.csv").write_text("key,name\n" + "".join(f"{key},csv {i}\n" for i, key in enumerate(from_csv)))
        failed = subprocess.run(
            [str(BIN / "keystile"), "keys", "import", str(jsonl), "--api-id", api_id],
            cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert failed.returncode == 2
        seen.cli.append(failed.stdout + failed.stderr)
        jsonl.write_text("".join(json.dumps({"key": key}) + "\n" for key in from_jsonl))
        seen.run("keys", "import", str(jsonl), "--api-id", api_id, workdir=tmp_path, env=env)
        seen.run("keys", "import", "keys.csv", "--api-id", api_id, workdir=tmp_path, env=env)
        seen.run("keys", "import", "keys.csv", "--api-id", api_id, "--json", workdir=tmp_path, env=env)
        every_key = [*over_http, *from_jsonl, *from_csv]
        for key in every_key:
            answer = seen.call("POST", f"{server.url}/v1/keys/verify", json={"key": key}, headers=auth)
            assert answer.json()["code"] == "VALID"
        seen.run("keys", "list", api_id, workdir=tmp_path, env=env)
        audit = seen.call("GET", f"{server.url}/v1/audit", params={"limit": "1000"}, headers=auth).json()["items"]
        assert "key.import" in {entry["action"] for entry in audit}
    finally:
        assert server.stop() == 0

    stored = _dump(database, tmp_path)
    audit_text = json.dumps(audit)
    server_output = server.stdout() + server.stderr()
    for key in every_key:
        assert key.encode() not in stored, "an imported plain-text key is in the database"
        assert key not in audit_text, "an imported plain-text key is in the audit log"
        assert key not in server_output, "an imported plain-text key is in the server's output"
        assert not any(key in text for text in [*seen.http, *seen.cli]), "an imported key was shown"


async def _signing_private_keys(database: str, master_file: Path) -> list[bytes]:
    """The private token signing keys in the database, opened with the master key (as only a server can)."""
    from keystile.core.clock import ManualClock
    from keystile.service import sealing
    from keystile.service.vault import read_master_key_file
    from keystile.storage import open_storage

    master = read_master_key_file(master_file)
    storage = await open_storage(database, ManualClock())
    try:
        opened = []
        for stored in await storage.list_signing_keys():
            row = await storage.get_data_key(stored.data_key_id)
            assert row is not None
            data_key = sealing.unwrap_data_key(master, row.id, row.wrapped)
            opened.append(sealing.open_signing_key(data_key, stored.kid, stored.nonce, stored.ciphertext))
        return opened
    finally:
        await storage.close()


def test_token_signing_keys_and_the_keys_that_issue_tokens_appear_nowhere(database: str, tmp_path: Path) -> None:
    # SPEC T2: signing keys are stored sealed under the master key; the keys presented to issue tokens are
    # verified, never stored or echoed (not in the token either).
    import asyncio
    import base64

    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data"), "KEYSTILE_DATABASE_URL": database}
    seen = Seen()
    [root_key] = ROOT_KEY_RE.findall(seen.run("init", workdir=tmp_path, env=env))
    server: Server = serve(tmp_path, env)
    try:
        auth = {"Authorization": f"Bearer {root_key}"}
        api_id = seen.call("POST", f"{server.url}/v1/apis", json={"name": "tokens"}, headers=auth).json()["id"]
        keys = [
            seen.call("POST", f"{server.url}/v1/apis/{api_id}/keys", json={"owner_id": "o"}, headers=auth).json()["key"]
            for _ in range(2)
        ]
        tokens = [seen.call("POST", f"{server.url}/v1/tokens", json={}, headers={"X-API-Key": keys[0]}).json()]
        seen.run("tokens", "rotate", workdir=tmp_path, env=env)
        tokens.append(
            seen.call("POST", f"{server.url}/v1/tokens", json={}, headers={"Authorization": f"Bearer {keys[1]}"}).json()
        )
        seen.call("POST", f"{server.url}/v1/tokens", json={"ttl_s": 0}, headers={"X-API-Key": keys[1]})
        seen.call("POST", f"{server.url}/v1/tokens", json={"permissions": ["x"]}, headers={"X-API-Key": keys[1]})
        for token in tokens:
            seen.call("POST", f"{server.url}/v1/tokens/verify", json={"token": token["token"]}, headers=auth)
        seen.call("GET", f"{server.url}/.well-known/jwks.json")
    finally:
        assert server.stop() == 0

    stored = _dump(database, tmp_path)
    server_output = server.stdout() + server.stderr()
    private_keys = asyncio.run(_signing_private_keys(database, tmp_path / "data" / "master.key"))
    assert len(private_keys) == 2
    for private in private_keys:
        for form in (private, base64.urlsafe_b64encode(private).rstrip(b"="), private.hex().encode()):
            assert form not in stored, "a private signing key is in the database"
            assert form.decode("latin-1") not in server_output
            assert not any(form.decode("latin-1") in text for text in [*seen.http, *seen.cli])
    for key in keys:
        assert key.encode() not in stored, "a key that issued a token is in the database"
        assert key not in server_output
        assert sum(text.count(key) for text in seen.http) == 1, "a key appears beyond the answer that created it"

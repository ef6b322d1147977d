"""``keystile keys import FILE`` (SPEC R4): CSV with its columns, dry runs, bad files, exit codes and the summary.
The JSON-lines walkthrough against a running server is in ``tests/e2e/test_key_import.py``."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from .helpers import Shell, create_api, init, plain_error


def b64(key: str) -> str:
    return base64.b64encode(hashlib.sha256(key.encode()).digest()).decode()


CSV = (
    "key,hash,hash_variant,name,owner_id,permissions,roles,expires_at,credits,enabled,meta\n"
    "kong-csv-key-0001-abcdef,,,first,alice,docs.read;docs.write,,2031-01-01T00:00:00Z,10,true,\n"
    f",{hashlib.sha256(b'kong-csv-key-0002-abcdef').hexdigest()},,second,,docs.read billing.read,,,,,\n"
    f',{b64("kong-csv-key-0003-abcdef")},sha256_base64,third,,,,,,false,"{{""plan"": ""pro""}}"\n'
)


def test_a_csv_file_imports_every_column_and_again_skips(any_shell: Shell, tmp_path: Path) -> None:
    init(any_shell)
    api_id = create_api(any_shell)
    path = tmp_path / "keys.csv"
    path.write_text(CSV)

    first = any_shell.ok("keys", "import", str(path), "--api-id", api_id)
    again = json.loads(any_shell.ok("keys", "import", str(path), "--api-id", api_id, "--json").stdout)

    assert "Imported 3 keys, skipped 0" in first.stdout
    assert (again["imported"], again["skipped"], again["failed"]) == (0, 3, 0)
    listed = {key["name"]: key for key in any_shell.json("keys", "list", api_id)["items"]}
    assert listed["first"]["permissions"] == ["docs.read", "docs.write"]
    assert listed["first"]["owner_id"] == "alice"
    assert listed["first"]["credits"]["remaining"] == 10
    assert listed["first"]["expires_at"].startswith("2031-01-01T00:00:00")
    assert listed["first"]["start"] == "kong"
    assert listed["second"]["permissions"] == ["docs.read", "billing.read"]
    assert (listed["third"]["enabled"], listed["third"]["meta"]) == (False, {"plan": "pro"})
    valid = any_shell("keys", "verify", "-", "--api-id", api_id, input="kong-csv-key-0002-abcdef\n")
    assert valid.stdout.split()[0] == "VALID"


def test_a_dry_run_checks_and_writes_nothing(any_shell: Shell, tmp_path: Path) -> None:
    init(any_shell)
    api_id = create_api(any_shell)
    path = tmp_path / "keys.csv"
    path.write_text(CSV)

    dry = any_shell.ok("keys", "import", str(path), "--api-id", api_id, "--dry-run")

    assert "Would import 3 keys" in dry.stdout
    assert "nothing was written" in dry.stdout
    assert any_shell.json("keys", "list", api_id)["items"] == []


def test_bad_files_name_the_line_and_exit_nonzero(ready: Shell, tmp_path: Path) -> None:
    api_id = create_api(ready)
    cases = {
        "unknown.csv": ("key,colour\nabc-def-ghi-jkl-mno,red\n", "line 1", 2),
        "broken.jsonl": ('{"key": "kong-key-one-0000000001"}\nnot json\n', "line 2", 2),
        "bad-field.jsonl": ('{"key": "kong-key-one-0000000001"}\n\n{"key": "kong-key-two-000000002", "x": 1}\n',
                            "line 3 (x)", 2),
        "bad-credits.csv": ("key,credits\nkong-key-one-0000000001,many\n", "line 2 (credits)", 2),
    }  # fmt: skip
    for name, (text, where, code) in cases.items():
        (tmp_path / name).write_text(text)
        result = ready("keys", "import", str(tmp_path / name), "--api-id", api_id)
        assert result.exit_code == code, (name, result.output)
        assert plain_error(result).startswith(f"Error: {where}"), (name, result.stderr)
        assert "kong-key" not in result.output
    assert ready.json("keys", "list", api_id)["items"] == []

    missing = ready("keys", "import", str(tmp_path / "broken.jsonl"), "--api-id", "api_none")
    assert missing.exit_code == 3
    assert "Imported" not in missing.stdout  # nothing began: no summary, only the error
    nowhere = ready("keys", "import", str(tmp_path / "no-such-file.jsonl"), "--api-id", api_id)
    assert nowhere.exit_code == 2


def test_a_key_of_another_api_is_a_conflict(ready: Shell, tmp_path: Path) -> None:
    first, second = create_api(ready), create_api(ready)
    path = tmp_path / "keys.jsonl"
    path.write_text('{"key": "kong-key-one-0000000001"}\n')
    ready.ok("keys", "import", str(path), "--api-id", first)

    clash = ready("keys", "import", str(path), "--api-id", second)

    assert clash.exit_code == 4
    assert "line 1" in plain_error(clash)
    assert "--start-line 1" in clash.stdout

"""``keystile scan`` (SPEC S3) on a real git repository holding real keys, in its files and in its history."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keystile.core import keys as keyformat
from tests.availability import require_tool

from .helpers import Shell, create_api, create_key, init

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Planted:
    """A repository with keys of the deployment: one in a file now, one only in an old commit."""

    repo: Path
    in_file: dict[str, Any]  # the created key (``key`` holds the plain text)
    in_history: dict[str, Any]
    old_commit: str
    lookalike: str

    @property
    def plain(self) -> list[str]:
        return [self.in_file["key"], self.in_history["key"], self.lookalike]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV, "HOME": str(repo.parent)}
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, check=True, text=True, timeout=60
    )
    return done.stdout.strip()


def wrong_checksum(key: str) -> str:
    return key[:-1] + ("0" if key[-1] != "0" else "1")


@pytest.fixture
def planted(tmp_path: Path, shell: Shell) -> Planted:
    require_tool("git")
    init(shell)
    api_id = create_api(shell, "--prefix", "acme_live")
    in_file, in_history = create_key(shell, api_id), create_key(shell, api_id)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# demo\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "start")
    (repo / "deploy").mkdir()
    (repo / "deploy" / "env").write_text(f"# production\nexport ACME_KEY={in_history['key']}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "add env")
    old_commit = git(repo, "rev-parse", "HEAD")
    (repo / "deploy" / "env").write_text("# production\nexport ACME_KEY=$(vault read acme)\n")
    git(repo, "commit", "-qam", "read the key from vault")
    lookalike = wrong_checksum(keyformat.generate("acme_live"))
    (repo / "client.py").write_text(f'import os\n\nKEY = "{in_file["key"]}"\nOTHER = "{lookalike}"\n')
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "client")
    return Planted(repo, in_file, in_history, old_commit, lookalike)


def scan(shell: Shell, *args: str) -> tuple[int, str, str]:
    result = shell("scan", *args)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def scan_json(shell: Shell, *args: str) -> dict[str, Any]:
    code, out, _ = scan(shell, *args, "--json")
    assert code == 1, out
    document: dict[str, Any] = json.loads(out)
    return document


def test_every_planted_key_is_found_in_files_and_history(shell: Shell, planted: Planted) -> None:
    document = scan_json(shell, str(planted.repo))
    found = {(f["commit"], f["path"], f["line"], f["digest"]) for f in document["findings"]}
    digest_now = keyformat.digest(planted.in_file["key"]).hex()
    digest_old = keyformat.digest(planted.in_history["key"]).hex()
    head = git(planted.repo, "rev-parse", "HEAD")
    assert found == {
        (None, str(planted.repo / "client.py"), 3, digest_now),
        (head, "client.py", 3, digest_now),
        (planted.old_commit, "deploy/env", 2, digest_old),
    }
    by_digest = {f["digest"]: f for f in document["findings"]}
    assert by_digest[digest_old]["status"] == "active"
    assert by_digest[digest_old]["key_id"] == planted.in_history["id"]
    assert by_digest[digest_old]["start"] == planted.in_history["start"]
    assert by_digest[digest_now]["column"] == len('KEY = "') + 1
    assert document["summary"] == {
        "findings": 3,
        "keys": 2,
        "active": 2,
        "revoked_now": 0,
        "files": 3,
        "skipped": 0,
        "commits": 4,
    }


def test_a_lookalike_with_a_wrong_checksum_is_not_reported(shell: Shell, planted: Planted) -> None:
    document = scan_json(shell, str(planted.repo))
    assert keyformat.digest(planted.lookalike).hex() not in {f["digest"] for f in document["findings"]}


def test_no_output_ever_holds_a_whole_key(shell: Shell, planted: Planted) -> None:
    for flags in ((), ("--json",), ("--sarif",), ("--revoke",)):
        code, out, err = scan(shell, str(planted.repo), *flags)
        assert code == 1
        for key in planted.plain:
            assert key not in out + err
            assert key[len("acme_live_") :] not in out + err


def test_text_output_is_a_table_of_locations_starts_and_statuses(shell: Shell, planted: Planted) -> None:
    code, out, _ = scan(shell, str(planted.repo))
    assert code == 1
    assert f"{planted.old_commit[:12]} deploy/env:2" in out
    assert f"{planted.repo / 'client.py'}:3:8" in out
    assert planted.in_history["start"] in out
    assert planted.in_history["id"] in out
    assert "Found 2 keys in 3 places, 2 still active" in out
    assert "keystile scan --revoke" in out


def test_sarif_output_is_a_sarif_2_1_0_log(shell: Shell, planted: Planted) -> None:
    code, out, _ = scan(shell, str(planted.repo), "--sarif")
    assert code == 1
    log = json.loads(out)
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "keystile"
    [rule] = driver["rules"]
    assert rule["id"] == "keystile/leaked-key"
    assert rule["shortDescription"]["text"]
    assert len(run["results"]) == 3
    for result in run["results"]:
        assert result["ruleId"] == rule["id"]
        assert result["ruleIndex"] == 0
        assert result["level"] == "error"
        assert result["message"]["text"].startswith("Keystile key acme_live_")
        [location] = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"]
        region = physical["region"]
        assert region["startLine"] >= 1
        assert region["endColumn"] - region["startColumn"] == len(planted.in_file["key"])
    history = [r for r in run["results"] if r["properties"].get("commit") == planted.old_commit]
    [old] = history
    assert old["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "deploy/env"
    assert old["partialFingerprints"]["keystileKeyDigest/v1"] == keyformat.digest(planted.in_history["key"]).hex()


def test_revoke_revokes_the_found_keys_and_audits_it(shell: Shell, planted: Planted) -> None:
    code, out, _ = scan(shell, str(planted.repo), "--revoke")
    assert code == 1  # the keys are still written in the repository
    assert "Revoked 2 keys" in out
    for created in (planted.in_file, planted.in_history):
        result = shell("keys", "verify", "-", input=created["key"])
        assert result.exit_code == 1
        assert result.stdout.startswith("REVOKED")
    with sqlite3.connect(shell.data_dir / "keystile.db") as db:
        rows = db.execute("SELECT actor, target, changes FROM audit_log WHERE action = 'key.leak_reported'").fetchall()
    assert {(actor, target) for actor, target, _ in rows} == {
        ("cli", planted.in_file["id"]),
        ("cli", planted.in_history["id"]),
    }
    for _, target, changes in rows:
        recorded = json.loads(changes)
        assert recorded["reported_by"] == "keystile scan"
        assert recorded["revoked_at"][0] is None
        if target == planted.in_history["id"]:
            assert recorded["locations"] == [f"{planted.old_commit[:12]} deploy/env:2"]
        assert all(key not in changes for key in planted.plain)
    again = scan_json(shell, str(planted.repo), "--revoke")
    assert {f["status"] for f in again["findings"]} == {"revoked"}
    assert again["summary"]["revoked_now"] == 0


def test_keys_of_no_deployment_are_reported_as_not_found(shell: Shell, planted: Planted) -> None:
    stranger = keyformat.generate("other")
    (planted.repo / "notes.txt").write_text(stranger + "\n")
    document = scan_json(shell, str(planted.repo / "notes.txt"))
    [finding] = document["findings"]
    assert (finding["status"], finding["key_id"], finding["line"], finding["column"]) == ("not_found", None, 1, 1)


def test_without_a_database_every_status_is_unknown(tmp_path: Path, planted: Planted) -> None:
    nowhere = Shell(tmp_path / "nothing", f"sqlite:///{tmp_path / 'nothing' / 'keystile.db'}")
    code, out, err = scan(nowhere, str(planted.repo), "--json")
    assert code == 1
    assert {f["status"] for f in json.loads(out)["findings"]} == {"unknown"}
    assert "statuses are unknown" in err
    assert "keystile init" in err
    assert not (tmp_path / "nothing" / "keystile.db").exists()
    code, _, err = scan(nowhere, str(planted.repo), "--revoke")
    assert code == 5
    assert "keystile init" in err


def test_offline_does_not_ask_the_database(shell: Shell, planted: Planted) -> None:
    code, out, err = scan(shell, str(planted.repo), "--offline", "--json")
    assert code == 1
    assert {f["status"] for f in json.loads(out)["findings"]} == {"unknown"}
    assert err == "Found 2 keys in 3 places; scanned 3 files, 4 commits.\n"


def test_history_is_left_out_with_no_git_and_included_with_git(shell: Shell, planted: Planted) -> None:
    files_only = scan_json(shell, str(planted.repo), "--no-git")
    assert [f["commit"] for f in files_only["findings"]] == [None]
    # A directory inside the repository is not scanned for history unless asked for.
    (planted.repo / "deploy" / "app.cfg").write_text("nothing here\n")
    code, _, _ = scan(shell, str(planted.repo / "deploy"))
    assert code == 0
    subtree = scan_json(shell, str(planted.repo / "deploy"), "--git")
    assert [(f["commit"], f["path"]) for f in subtree["findings"]] == [(planted.old_commit, "deploy/env")]


@pytest.fixture
def ignoring(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git work tree that ignores ``.venv/`` and ``*.log``: a key in a tracked file, one in an untracked file it
    does not ignore, one in an ignored directory and one in an ignored file (none of them ever committed)."""
    require_tool("git")
    repo = tmp_path / "work"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    keys = {name: keyformat.generate("ks") for name in ("tracked", "untracked", "venv", "log")}
    (repo / ".gitignore").write_text(".venv/\n*.log\n")
    (repo / "app.py").write_text(f"KEY = '{keys['tracked']}'\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "app")
    (repo / "notes.txt").write_text(f"try {keys['untracked']}\n")
    (repo / ".venv" / "lib").mkdir(parents=True)
    (repo / ".venv" / "lib" / "site.py").write_text(f"K = '{keys['venv']}'\n")
    (repo / "debug.log").write_text(f"verified {keys['log']}\n")
    return repo, {name: keyformat.digest(key).hex() for name, key in keys.items()}


def _found(shell: Shell, *args: str) -> dict[str, int]:
    """The files a scan (offline, files only) found keys in, relative to where it ran, and how many it read."""
    code, out, _ = scan(shell, *args, "--offline", "--no-git", "--json")
    document = json.loads(out)
    assert code == (1 if document["findings"] else 0)
    return {f["path"]: f["line"] for f in document["findings"]} | {"files read": document["summary"]["files"]}


def test_files_git_ignores_are_skipped_in_a_work_tree(shell: Shell, ignoring: tuple[Path, dict[str, str]]) -> None:
    repo, _ = ignoring

    assert _found(shell, str(repo)) == {str(repo / "app.py"): 1, str(repo / "notes.txt"): 1, "files read": 3}


def test_no_gitignore_scans_the_ignored_files_too(shell: Shell, ignoring: tuple[Path, dict[str, str]]) -> None:
    repo, _ = ignoring

    assert _found(shell, str(repo), "--no-gitignore") == {
        str(repo / "app.py"): 1,
        str(repo / "debug.log"): 1,
        str(repo / "notes.txt"): 1,
        str(repo / ".venv" / "lib" / "site.py"): 1,
        "files read": 5,
    }


def test_an_ignored_path_named_on_purpose_is_scanned(shell: Shell, ignoring: tuple[Path, dict[str, str]]) -> None:
    repo, _ = ignoring

    assert _found(shell, str(repo / ".venv")) == {str(repo / ".venv" / "lib" / "site.py"): 1, "files read": 1}
    assert _found(shell, str(repo / "debug.log")) == {str(repo / "debug.log"): 1, "files read": 1}


def test_history_is_scanned_as_before_when_files_are_ignored(
    shell: Shell, ignoring: tuple[Path, dict[str, str]]
) -> None:
    repo, digests = ignoring
    git(repo, "add", "-f", "debug.log")  # committed once, despite .gitignore, then removed
    git(repo, "commit", "-qm", "oops")
    git(repo, "rm", "-q", "--cached", "debug.log")
    git(repo, "commit", "-qm", "untrack the log")

    code, out, _ = scan(shell, str(repo), "--offline", "--json")

    assert code == 1
    found = {(f["commit"] is not None, f["path"], f["digest"]) for f in json.loads(out)["findings"]}
    assert (True, "debug.log", digests["log"]) in found
    assert (False, str(repo / "debug.log"), digests["log"]) not in found


def test_binary_huge_and_git_internal_files_are_skipped(shell: Shell, tmp_path: Path) -> None:
    key = keyformat.generate("ks")
    tree = tmp_path / "tree"
    (tree / ".git").mkdir(parents=True)
    (tree / ".git" / "config").write_text(key)
    (tree / "blob.bin").write_bytes(b"\x00\x01" + key.encode())
    (tree / "big.txt").write_text("x" * 2000 + key)
    (tree / "small.txt").write_text(key)
    code, out, _ = scan(shell, str(tree), "--offline", "--no-git", "--max-size", "1000", "--json")
    assert code == 1
    document = json.loads(out)
    assert [f["path"] for f in document["findings"]] == [str(tree / "small.txt")]
    assert (document["summary"]["files"], document["summary"]["skipped"]) == (1, 2)


def test_nothing_found_exits_0(shell: Shell, tmp_path: Path) -> None:
    (tmp_path / "clean.txt").write_text("ks_" + "A" * 38 + "\n")
    code, out, _ = scan(shell, str(tmp_path / "clean.txt"), "--offline")
    assert code == 0
    assert out == "No Keystile keys found in 1 file, 0 commits.\n"
    code, out, err = scan(shell, str(tmp_path / "clean.txt"), "--offline", "--sarif")
    assert code == 0
    assert json.loads(out)["runs"][0]["results"] == []
    assert "No Keystile keys found" in err


@pytest.mark.parametrize(
    "args",
    [
        ("--json", "--sarif"),
        ("--revoke", "--offline"),
        ("--max-size", "0"),
    ],
)
def test_usage_errors_exit_2(shell: Shell, tmp_path: Path, args: tuple[str, ...]) -> None:
    code, _, err = scan(shell, str(tmp_path), *args)
    assert code == 2
    assert "Error" in err


def test_a_missing_path_or_git_outside_a_repository_is_a_usage_error(shell: Shell, tmp_path: Path) -> None:
    code, _, _ = scan(shell, str(tmp_path / "missing"))
    assert code == 2
    outside = tmp_path / "plain"
    outside.mkdir()
    code, _, err = scan(shell, str(outside), "--git", "--offline")
    assert code == 2
    assert "not in a git repository" in err


def test_the_pre_commit_hook_refuses_staged_files_with_a_key(shell: Shell, tmp_path: Path) -> None:
    hooks = (Path(__file__).parents[2] / ".pre-commit-hooks.yaml").read_text()
    assert "- id: keystile-scan\n" in hooks
    [entry] = [line.split(":", 1)[1].split() for line in hooks.splitlines() if line.strip().startswith("entry:")]
    assert entry[:2] == ["keystile", "scan"]
    leaked, clean = tmp_path / "settings.py", tmp_path / "app.py"
    leaked.write_text(f"KEY = '{keyformat.generate('ks')}'\n")
    clean.write_text("print('hello')\n")
    # pre-commit passes the staged file names after the entry's arguments.
    assert shell(*entry[1:], str(clean)).exit_code == 0
    result = shell(*entry[1:], str(clean), str(leaked))
    assert result.exit_code == 1
    assert f"{leaked}:1:8" in result.stdout

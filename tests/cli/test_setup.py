"""``keystile init`` and ``keystile migrate``: schema, master key and the first root key, shown once."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from keystile.core.clock import ManualClock
from keystile.storage import open_storage
from keystile.storage._migrate import available

from .helpers import ROOT_KEY, Shell, init, plain_error


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_prints_a_root_key_once_and_a_second_init_prints_none(any_shell: Shell) -> None:
    first = any_shell.ok("init")
    assert len(ROOT_KEY.findall(first.stdout)) == 1
    assert "shown this once" in first.stdout

    second = any_shell.ok("init")
    assert ROOT_KEY.search(second.output) is None
    assert "An active root key exists already" in second.stdout
    assert "keystile root-keys create --permission '*'" in second.stdout


def test_the_root_key_printed_by_init_is_an_active_root_key_with_every_permission(shell: Shell) -> None:
    key = init(shell)
    [listed] = shell.json("root-keys", "list")["items"]
    assert key.startswith(listed["start"])
    assert listed["permissions"] == ["*"]
    assert listed["revoked_at"] is None


def test_init_creates_the_data_dir_and_a_private_master_key_once(shell: Shell) -> None:
    init(shell)
    master = shell.data_dir / "master.key"
    assert mode(master) == 0o600
    assert len(base64.b64decode(master.read_text().strip(), validate=True)) == 32
    before = master.read_bytes()

    shell.ok("init")
    assert master.read_bytes() == before


def test_init_writes_the_root_key_to_a_new_private_file_instead_of_stdout(shell: Shell) -> None:
    target = shell.data_dir.parent / "root.key"
    result = shell.ok("init", "--root-key-file", str(target))

    assert ROOT_KEY.search(result.output) is None
    assert str(target) in result.stdout
    assert mode(target) == 0o600
    assert ROOT_KEY.fullmatch(target.read_text().strip())


def test_init_refuses_an_existing_root_key_file_before_making_a_key(shell: Shell) -> None:
    target = shell.data_dir.parent / "root.key"
    target.write_text("keep me\n")

    result = shell("init", "--root-key-file", str(target))
    assert result.exit_code == 4
    assert "already exists" in plain_error(result)
    assert target.read_text() == "keep me\n"
    assert len(ROOT_KEY.findall(shell.ok("init").stdout)) == 1
    assert len(shell.json("root-keys", "list")["items"]) == 1  # the refused init made none


def test_a_root_key_file_is_removed_when_no_root_key_is_made(ready: Shell) -> None:
    target = ready.data_dir.parent / "root.key"
    result = ready.ok("init", "--root-key-file", str(target))
    assert "An active root key exists already" in result.stdout
    assert not target.exists()


def test_init_json_carries_the_root_key_and_nothing_else_on_stdout(shell: Shell) -> None:
    doc = json.loads(shell.ok("init", "--json").stdout)
    assert ROOT_KEY.fullmatch(doc["root_key"]["key"])
    assert doc["root_key"]["permissions"] == ["*"]
    assert doc["migrations_applied"] == [m.version for m in available("sqlite")]
    assert doc["migrations_applied"][0] == 1
    assert doc["master_key_created"] is True

    again = json.loads(shell.ok("init", "--json").stdout)
    assert again["root_key"] is None
    assert again["active_root_key"] is True
    assert again["migrations_applied"] == []


def test_commands_refuse_a_database_that_was_never_initialised(shell: Shell) -> None:
    result = shell("apis", "list")
    assert result.exit_code == 5
    assert "run keystile init (or keystile migrate)" in plain_error(result)
    assert not shell.data_dir.exists()  # nothing was created on the way


def test_commands_refuse_a_database_with_pending_migrations(shell: Shell) -> None:
    shell.data_dir.mkdir()
    sqlite3.connect(shell.data_dir / "keystile.db").close()  # an empty database: every migration is pending

    result = shell("keys", "show", "key_x")
    assert result.exit_code == 5
    assert "migrations pending" in plain_error(result)

    assert "Applied migrations 0001" in shell.ok("migrate").stdout
    assert shell("keys", "show", "key_x").exit_code == 3


def test_migrate_says_when_the_schema_is_up_to_date(ready: Shell) -> None:
    assert "up to date" in ready.ok("migrate").stdout
    assert ready.json("migrate") == {"applied": []}


def test_a_database_that_cannot_be_reached_exits_5(shell: Shell) -> None:
    result = shell("--database-url", "postgresql://postgres@127.0.0.1:1/nothing", "apis", "list")
    assert result.exit_code == 5
    assert "storage_unavailable" in plain_error(result)


def test_an_invalid_setting_exits_2_naming_the_variable(ready: Shell) -> None:
    result = ready("apis", "list", env={"KEYSTILE_CACHE_SIZE": "lots"})
    assert result.exit_code == 2
    assert "KEYSTILE_CACHE_SIZE" in plain_error(result)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this umask: Keystile's files must not depend on it."""
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def _sidecars(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]


@pytest.mark.usefixtures("umask")
def test_init_makes_a_private_data_dir_and_database_whatever_the_umask(shell: Shell) -> None:
    init(shell)

    assert mode(shell.data_dir) == 0o700
    assert mode(shell.data_dir / "keystile.db") == 0o600
    assert {path.name: mode(path) for path in shell.data_dir.iterdir()} == {
        "keystile.db": 0o600,
        "master.key": 0o600,
    }


@pytest.mark.usefixtures("umask")
def test_a_database_made_by_migrate_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    database = tmp_path / "elsewhere" / "keystile.db"
    shell = Shell(tmp_path / "data", f"sqlite:///{database}")
    shell.ok("migrate")
    assert mode(database.parent) == 0o700
    assert mode(database) == 0o600

    async def write_and_look() -> dict[str, int]:
        storage = await open_storage(shell.database_url, ManualClock())
        try:
            await storage.migrate()  # takes the write lock: SQLite makes the -wal and -shm files
            return {path.name: mode(path) for path in _sidecars(database) if path.exists()}
        finally:
            await storage.close()

    assert asyncio.run(write_and_look()) == {"keystile.db-wal": 0o600, "keystile.db-shm": 0o600}


def test_init_warns_about_a_data_dir_and_database_others_can_read_and_leaves_their_modes(shell: Shell) -> None:
    init(shell)
    database = shell.data_dir / "keystile.db"
    shell.data_dir.chmod(0o755)
    database.chmod(0o644)

    result = shell.ok("init")

    assert f"{shell.data_dir} can be entered by other users; chmod 700 it" in result.stderr
    assert f"{database} can be read by other users; chmod 600 it" in result.stderr
    assert mode(shell.data_dir) == 0o755  # a warning, not a silent chmod of the user's files
    assert mode(database) == 0o644

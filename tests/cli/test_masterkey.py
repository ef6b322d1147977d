"""``keystile master-key create|fingerprint|rotate`` and the master key at ``init`` (SPEC K3), on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import stat

from keystile.config import Settings

from .helpers import Shell, create_api, create_key, init, plain_error


def test_create_writes_a_new_private_key_whose_fingerprint_it_prints(any_shell: Shell) -> None:
    target = any_shell.data_dir.parent / "new.key"

    created = any_shell.json("master-key", "create", str(target))

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert created["master_key_id"].startswith("mk_")
    assert any_shell.ok("master-key", "fingerprint", str(target)).stdout.strip() == created["master_key_id"]
    again = any_shell("master-key", "create", str(target))
    assert again.exit_code == 4
    assert "already exists" in plain_error(again)


def test_fingerprint_without_a_file_names_the_configured_key_and_never_prints_it(any_shell: Shell) -> None:
    init(any_shell)
    master = (any_shell.data_dir / "master.key").read_text().strip()

    shown = any_shell.json("master-key", "fingerprint")["master_key_id"]

    assert shown == any_shell.ok("master-key", "fingerprint", str(any_shell.data_dir / "master.key")).stdout.strip()
    hex_key = "ab" * 32
    from_env = any_shell("master-key", "fingerprint", env={"KEYSTILE_MASTER_KEY": hex_key})
    assert from_env.exit_code == 0
    assert from_env.stdout.strip() not in (shown, hex_key)
    assert master not in from_env.output
    bad = any_shell("master-key", "fingerprint", env={"KEYSTILE_MASTER_KEY": "not a key"})
    assert bad.exit_code == 2
    assert "KEYSTILE_MASTER_KEY must hold a master key" in plain_error(bad)
    assert "not a key" not in bad.output


def test_rotate_rewraps_once_and_reports_data_keys_it_cannot_open(any_shell: Shell) -> None:
    init(any_shell)
    api_id = create_api(any_shell, "--recoverable")
    create_key(any_shell, api_id)
    new_file = any_shell.data_dir.parent / "new.key"
    new_id = any_shell.json("master-key", "create", str(new_file))["master_key_id"]

    done = any_shell.json("master-key", "rotate", "--new-key-file", str(new_file))
    assert done == {
        "master_key_id": new_id,
        "rewrapped": 1,
        "already_rewrapped": 0,
        "unopened_master_key_ids": [],
    }
    told = any_shell.ok("master-key", "rotate", "--new-key-file", str(new_file)).stdout
    assert f"Re-wrapped 0 data keys under master key {new_id} (1 already were)." in told
    assert f"make {new_file} the master key" in told

    # The old master key (still configured) opens nothing now: rotating with it leaves the data key and says so.
    stranded = any_shell("master-key", "rotate", "--new-key-file", str(any_shell.data_dir / "master.key"))
    assert stranded.exit_code == 5
    assert new_id in plain_error(stranded)
    assert "KEYSTILE_MASTER_KEY_PREVIOUS_FILE" in plain_error(stranded)


def test_rotate_to_the_configured_key_opens_what_the_previous_one_wrapped(any_shell: Shell) -> None:
    init(any_shell)
    old_file = any_shell.data_dir / "master.key"
    api_id = create_api(any_shell, "--recoverable")
    created = create_key(any_shell, api_id)
    new_file = any_shell.data_dir.parent / "new.key"
    any_shell.ok("master-key", "create", str(new_file))
    during = {"KEYSTILE_MASTER_KEY_FILE": str(new_file), "KEYSTILE_MASTER_KEY_PREVIOUS_FILE": str(old_file)}

    result = any_shell("master-key", "rotate", "--json", env=during)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rewrapped"] == 1
    assert created["key"] not in result.output


def test_keys_plaintext_reads_a_recoverable_key_back_and_refuses_others(any_shell: Shell) -> None:
    init(any_shell)
    api_id = create_api(any_shell, "--recoverable")
    sealed = create_key(any_shell, api_id)
    opted_out = create_key(any_shell, api_id, "--not-recoverable")

    assert any_shell.ok("keys", "plaintext", sealed["id"]).stdout == sealed["key"] + "\n"
    assert any_shell.json("keys", "plaintext", sealed["id"]) == {"key_id": sealed["id"], "key": sealed["key"]}
    refused = any_shell("keys", "plaintext", opted_out["id"])
    assert refused.exit_code == 4
    assert plain_error(refused).endswith("[not_recoverable]")
    wrong = any_shell("keys", "plaintext", sealed["id"], env={"KEYSTILE_MASTER_KEY": "ab" * 32})
    assert wrong.exit_code == 5
    assert plain_error(wrong).endswith("[master_key_unavailable]")
    other_api = create_api(any_shell)
    opted_in = any_shell("keys", "create", other_api, "--recoverable")
    assert opted_in.exit_code == 2
    assert plain_error(opted_in).endswith("[api_not_recoverable]")


def test_init_makes_no_new_master_key_beside_stored_data_keys(shell: Shell) -> None:
    init(shell)
    create_key(shell, create_api(shell, "--recoverable"))
    master = shell.data_dir / "master.key"
    master.unlink()

    result = shell.ok("init")

    assert not master.exists()
    assert "Master key created" not in result.output


def test_the_master_key_is_masked_where_settings_are_shown() -> None:
    settings = Settings(master_key="ab" * 32, master_key_previous="cd" * 32)

    assert settings.public()["master_key"] == "***"
    assert settings.public()["master_key_previous"] == "***"
    assert "ab" * 32 not in repr(settings)
    assert "cd" * 32 not in repr(settings)

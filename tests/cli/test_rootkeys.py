"""``keystile root-keys create|list|revoke``."""

from __future__ import annotations

import stat

from .helpers import ROOT_KEY, Shell, plain_error


def test_create_prints_the_root_key_once_and_list_never_shows_it(ready: Shell) -> None:
    result = ready.ok("root-keys", "create", "--permission", "keys.read", "--permission", "keys.verify", "--name", "ci")
    [key] = ROOT_KEY.findall(result.stdout)

    listing = ready.ok("root-keys", "list").stdout
    assert key not in listing
    assert "keys.read, keys.verify" in listing
    items = ready.json("root-keys", "list")["items"]
    assert [item["name"] for item in items] == ["ci", "initial root key"]
    assert key not in str(items)


def test_create_json_carries_the_key(ready: Shell) -> None:
    created = ready.json("root-keys", "create", "--permission", "api.api_x1.keys.*")
    assert ROOT_KEY.fullmatch(created["key"])
    assert created["permissions"] == ["api.api_x1.keys.*"]


def test_create_can_write_the_key_to_a_private_file(ready: Shell) -> None:
    target = ready.data_dir.parent / "ci.key"
    result = ready.ok("root-keys", "create", "--permission", "*", "--root-key-file", str(target))
    assert ROOT_KEY.search(result.output) is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert ROOT_KEY.fullmatch(target.read_text().strip())


def test_revoke_marks_the_root_key_revoked_and_init_then_makes_a_new_one(ready: Shell) -> None:
    [first] = ready.json("root-keys", "list")["items"]
    revoked = ready.json("root-keys", "revoke", first["id"])
    assert revoked["revoked_at"] is not None
    assert "revoked" in ready.ok("root-keys", "list").stdout

    assert len(ROOT_KEY.findall(ready.ok("init").stdout)) == 1


def test_an_unknown_permission_exits_2(ready: Shell) -> None:
    result = ready("root-keys", "create", "--permission", "everything")
    assert result.exit_code == 2
    assert "not a root key permission" in plain_error(result)


def test_a_permission_is_required(ready: Shell) -> None:
    result = ready("root-keys", "create")
    assert result.exit_code == 2
    assert "--permission" in result.stderr

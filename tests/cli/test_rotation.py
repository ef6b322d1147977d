"""``keystile keys reroll``, ``keys credits``, the stale marker of ``keys list`` and ``apis create`` with a
rotation policy (SPEC R2, R3, L3) from the shell."""

from __future__ import annotations

import sqlite3

from keystile.core import keys as keyformat

from .helpers import Shell, create_api, create_key, init, plain_error

DAY_MS = 86_400_000


def test_reroll_prints_the_new_key_once_and_the_old_key_stops_after_the_grace(any_shell: Shell) -> None:
    init(any_shell)
    api_id = create_api(any_shell)
    old = create_key(any_shell, api_id, "--name", "ci", "--owner-id", "acme", "--credits", "5")

    human = any_shell.ok("keys", "reroll", old["id"], "--grace", "1h")
    [new_key] = [line for line in human.stdout.splitlines() if keyformat.parse(line.strip()) is not None]
    assert "stops working at" in human.stdout
    assert any_shell("keys", "verify", old["key"]).exit_code == 0, "in its grace period"
    assert any_shell("keys", "verify", new_key).exit_code == 0

    shown = any_shell.json("keys", "show", old["id"])
    new = any_shell.json("keys", "show", shown["rotated_to"])
    assert new["rotated_from"] == old["id"]
    assert (new["name"], new["owner_id"]) == ("ci", "acme")
    assert new["credits"]["remaining"] == shown["credits"]["remaining"] == 3, "one balance, spent by both keys"
    assert new_key not in any_shell.ok("keys", "show", new["id"]).output

    again = any_shell("keys", "reroll", old["id"])
    assert again.exit_code == 4
    assert plain_error(again).endswith("[key_rotated]")


def test_reroll_without_grace_expires_the_old_key_now(ready: Shell) -> None:
    api_id = create_api(ready)
    old = create_key(ready, api_id)

    new = ready.json("keys", "reroll", old["id"], "--expires-in", "30d")

    assert new["key"].startswith("ks_")
    assert new["expires_at"] is not None
    assert ready("keys", "verify", old["key"]).stdout.startswith("EXPIRED")
    assert ready("keys", "verify", new["key"]).exit_code == 0


def test_reroll_of_a_revoked_key_is_a_conflict(ready: Shell) -> None:
    api_id = create_api(ready)
    key = create_key(ready, api_id)
    ready.ok("keys", "revoke", key["id"])

    result = ready("keys", "reroll", key["id"])

    assert result.exit_code == 4
    assert plain_error(result).endswith("[key_revoked]")


def test_reroll_refuses_a_grace_that_is_not_a_duration(ready: Shell) -> None:
    api_id = create_api(ready)
    key = create_key(ready, api_id)

    assert ready("keys", "reroll", key["id"], "--grace", "soon").exit_code == 2


def test_credits_are_set_added_subtracted_and_made_unlimited(ready: Shell) -> None:
    api_id = create_api(ready)
    key = create_key(ready, api_id, "--credits", "10")

    assert "15 left" in ready.ok("keys", "credits", key["id"], "--add", "5").stdout
    assert ready.json("keys", "credits", key["id"], "--subtract", "20")["credits"]["remaining"] == 0
    assert ready("keys", "verify", key["key"]).stdout.startswith("USAGE_EXCEEDED")
    assert ready.json("keys", "credits", key["id"], "--set", "2")["credits"]["remaining"] == 2
    assert "unlimited" in ready.ok("keys", "credits", key["id"], "--unlimited").stdout

    refused = ready("keys", "credits", key["id"], "--add", "1")
    assert refused.exit_code == 4
    assert plain_error(refused).endswith("[credits_unlimited]")


def test_credits_take_exactly_one_operation_and_a_count(ready: Shell) -> None:
    api_id = create_api(ready)
    key = create_key(ready, api_id, "--credits", "10")

    assert ready("keys", "credits", key["id"]).exit_code == 2
    assert ready("keys", "credits", key["id"], "--add", "1", "--unlimited").exit_code == 2
    negative = ready("keys", "credits", key["id"], "--set", "-1")
    assert negative.exit_code == 2
    assert "(--set)" in plain_error(negative)
    assert ready("keys", "credits", "key_unknown", "--add", "1").exit_code == 3


def test_keys_past_the_api_maximum_age_are_listed_as_stale(shell: Shell) -> None:
    init(shell)
    api = shell.json("apis", "create", "rotated", "--max-key-age-days", "30", "--expire-stale-after-days", "7")
    assert (api["max_key_age_days"], api["expire_stale_after_days"]) == (30, 7)
    old = create_key(shell, api["id"], "--name", "old")
    young = create_key(shell, api["id"], "--name", "young")
    # Age one key by 31 days behind the interface: the CLI runs on the real clock.
    path = shell.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE keys SET created_at = created_at - ? WHERE id = ?", (31 * DAY_MS, old["id"]))
    db.close()

    assert [k["id"] for k in shell.json("keys", "list", api["id"], "--stale")["items"]] == [old["id"]]
    assert [k["id"] for k in shell.json("keys", "list", api["id"], "--not-stale")["items"]] == [young["id"]]
    assert shell.json("keys", "show", old["id"])["stale"] is True
    table = shell.ok("keys", "list", api["id"]).stdout.splitlines()
    assert "STALE" in table[0]
    [old_row] = [line for line in table if old["id"] in line]
    [young_row] = [line for line in table if young["id"] in line]
    assert " yes " in old_row
    assert " no " in young_row
    # 31 days old, under a policy that expires keys 7 days after their 30: not expired yet.
    assert shell("keys", "verify", old["key"]).exit_code == 0


def test_an_expiry_policy_needs_a_maximum_age(ready: Shell) -> None:
    result = ready("apis", "create", "x", "--expire-stale-after-days", "3")

    assert result.exit_code == 2
    assert plain_error(result).endswith("(--expire-stale-after-days) [invalid_rotation_policy]")

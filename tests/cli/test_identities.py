"""``keystile identities create|show|update|delete`` (SPEC K5) from the shell."""

from __future__ import annotations

from .helpers import Shell, create_api, create_key, init, plain_error


def test_an_identity_walkthrough_shares_credits_across_apis(any_shell: Shell) -> None:
    init(any_shell)
    created = any_shell.json(
        "identities", "create", "acme", "--credits", "2", "--ratelimit", "api=100/1m", "--meta", '{"plan": "pro"}'
    )
    assert created["owner_id"] == "acme"
    assert created["credits"] == {"remaining": 2, "refill": None}
    assert created["ratelimits"] == [{"name": "api", "limit": 100, "duration_ms": 60_000, "auto_apply": True}]
    assert any_shell.json("identities", "show", "acme") == created

    first = create_key(any_shell, create_api(any_shell), "--owner-id", "acme")
    second = create_key(any_shell, create_api(any_shell), "--owner-id", "acme")
    assert any_shell("keys", "verify", first["key"]).exit_code == 0
    assert any_shell("keys", "verify", second["key"]).exit_code == 0
    exhausted = any_shell("keys", "verify", first["key"])
    assert exhausted.exit_code == 1
    assert exhausted.stdout.startswith("USAGE_EXCEEDED")

    human = any_shell.ok("identities", "update", "acme", "--credits", "10", "--clear-ratelimits").stdout
    assert "10" in human
    assert any_shell.json("identities", "show", "acme")["ratelimits"] == []
    assert any_shell("keys", "verify", second["key"]).exit_code == 0

    assert "Deleted" in any_shell.ok("identities", "delete", "acme", "--yes").stdout
    missing = any_shell("identities", "show", "acme")
    assert missing.exit_code == 3
    assert plain_error(missing).endswith("[identity_not_found]")


def test_a_second_identity_for_an_owner_is_a_conflict(ready: Shell) -> None:
    ready.ok("identities", "create", "acme")

    result = ready("identities", "create", "acme")

    assert result.exit_code == 4
    assert plain_error(result).endswith("[identity_exists]")


def test_identities_update_builds_a_merge_patch(ready: Shell) -> None:
    ready.ok("identities", "create", "acme", "--meta", '{"a": 1}', "--credits", "5")

    updated = ready.json("identities", "update", "acme", "--meta", '{"b": 2}', "--unlimited-credits")

    assert updated["meta"] == {"a": 1, "b": 2}
    assert updated["credits"] is None
    assert ready("identities", "update", "acme").exit_code == 2, "nothing to change"
    assert ready("identities", "update", "acme", "--ratelimit", "a=1/1s", "--clear-ratelimits").exit_code == 2


def test_bad_input_names_the_flag_and_delete_asks_first(ready: Shell) -> None:
    bad = ready("identities", "create", "acme", "--credits", "-1")
    assert bad.exit_code == 2
    assert "--credits" in plain_error(bad)

    ready.ok("identities", "create", "acme")
    refused = ready("identities", "delete", "acme", input="n\n")
    assert refused.exit_code == 1
    assert ready("identities", "show", "acme").exit_code == 0

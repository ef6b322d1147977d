"""``keystile apis …`` and ``keystile keys …``: the walkthrough from the shell, outputs and exit codes."""

from __future__ import annotations

import pytest

from keystile.core import keys as keyformat

from .helpers import Shell, create_api, create_key, init, plain_error


def one_character_changed(key: str) -> str:
    index = len(key) - 10
    replacement = "B" if key[index] == "A" else "A"
    return key[:index] + replacement + key[index + 1 :]


def test_create_verify_revoke_verify_from_the_shell(any_shell: Shell) -> None:
    init(any_shell)
    api_id = create_api(any_shell)
    created = create_key(any_shell, api_id, "--name", "alice laptop", "--permission", "forecast.read")
    key = created["key"]

    valid = any_shell("keys", "verify", "-", "--api-id", api_id, "--permissions", "forecast.read", input=key + "\n")
    assert valid.exit_code == 0
    assert valid.stdout.split()[:2] == ["VALID", created["id"]]

    assert "Revoked key" in any_shell.ok("keys", "revoke", created["id"]).stdout

    revoked = any_shell("keys", "verify", "-", input=key + "\n")
    assert revoked.exit_code == 1
    assert revoked.stdout.split()[:2] == ["REVOKED", created["id"]]

    wrong = any_shell("keys", "verify", one_character_changed(key))
    assert wrong.exit_code == 1
    assert wrong.stdout.strip() == "NOT_FOUND"


def test_verify_says_when_a_checksum_does_not_match(ready: Shell) -> None:
    api_id = create_api(ready, "--prefix", "acme_live")
    key = create_key(ready, api_id)["key"]
    mistyped = one_character_changed(key)
    truncated = key.removeprefix("acme_")  # still in the shape, under the prefix "live"

    for wrong in (mistyped, truncated):
        for extra in ((), ("--json",)):
            result = ready("keys", "verify", wrong, *extra)
            assert result.exit_code == 1
            assert ('"NOT_FOUND"' in result.stdout) if extra else (result.stdout.strip() == "NOT_FOUND")
            assert result.stderr.strip() == (
                "this is not a key Keystile issued (its checksum does not match: mistyped or truncated?)"
            )
            assert wrong not in result.output


def test_verify_gives_no_checksum_hint_for_a_key_that_is_merely_unknown(ready: Shell) -> None:
    unknown = keyformat.generate("ks")  # a good checksum, never issued here
    other_shape = "sk_live_not_a_keystile_key"

    for key in (unknown, other_shape):
        result = ready("keys", "verify", key)
        assert (result.exit_code, result.stdout.strip(), result.stderr) == (1, "NOT_FOUND", "")


def test_verify_json_has_the_shape_of_the_http_answer(ready: Shell) -> None:
    api_id = create_api(ready)
    created = create_key(ready, api_id, "--owner-id", "alice", "--credits", "5", "--permission", "docs.read")

    answer = ready.json("keys", "verify", created["key"])
    assert answer["valid"] is True
    assert answer["code"] == "VALID"
    assert answer["key_id"] == created["id"]
    assert answer["owner_id"] == "alice"
    assert answer["credits"] == {"remaining": 4}, "the credit this verification spent, as the HTTP answer says"

    denied = ready("keys", "verify", created["key"], "--permissions", "docs.write", "--json")
    assert denied.exit_code == 1
    assert '"INSUFFICIENT_PERMISSIONS"' in denied.stdout


def test_a_key_of_another_api_is_not_found(ready: Shell) -> None:
    first, second = create_api(ready), create_api(ready)
    created = create_key(ready, first)
    result = ready("keys", "verify", created["key"], "--api-id", second, "--json")
    assert result.exit_code == 1
    assert '"NOT_FOUND"' in result.stdout
    assert created["id"] not in result.stdout


def test_the_plain_key_appears_only_in_the_output_of_create(ready: Shell) -> None:
    api_id = create_api(ready)
    human = ready.ok("keys", "create", api_id, "--name", "shown once")
    [key] = [line for line in human.stdout.splitlines() if line.startswith("ks_") and len(line) > 30]
    assert keyformat.parse(key) is not None
    key_id = ready.json("keys", "list", api_id)["items"][0]["id"]

    outputs = [
        ready.ok("keys", "list", api_id).output,
        ready.ok("keys", "list", api_id, "--json").output,
        ready.ok("keys", "show", key_id).output,
        ready.ok("keys", "show", key_id, "--json").output,
        ready.ok("keys", "update", key_id, "--name", "renamed").output,
        ready.ok("keys", "verify", "-", input=key).output,
        ready.ok("keys", "revoke", key_id, "--json").output,
    ]
    for output in outputs:
        assert key not in output
        assert key[len("ks_") + 4 :] not in output  # not even the part after `start`


def test_keys_create_takes_every_field_of_the_api(ready: Shell) -> None:
    api_id = create_api(ready)
    created = create_key(
        ready,
        api_id,
        "--name",
        "full",
        "--owner-id",
        "org_1",
        "--meta",
        '{"plan": "pro"}',
        "--permission",
        "docs.read",
        "--permission",
        "docs.write",
        "--expires-at",
        "2099-01-01T00:00:00Z",
        "--credits",
        "100",
        "--refill-amount",
        "100",
        "--refill-interval",
        "monthly",
        "--refill-day",
        "1",
        "--ratelimit",
        "api=100/1m",
        "--ip",
        "10.0.0.0/8",
        "--disabled",
    )
    assert created["owner_id"] == "org_1"
    assert created["meta"] == {"plan": "pro"}
    assert created["permissions"] == ["docs.read", "docs.write"]
    assert created["expires_at"] == "2099-01-01T00:00:00.000Z"
    assert created["credits"] == {"remaining": 100, "refill": {"amount": 100, "interval": "monthly", "day": 1}}
    assert created["ratelimits"] == [{"name": "api", "limit": 100, "duration_ms": 60_000, "auto_apply": True}]
    assert created["ip_allowlist"] == ["10.0.0.0/8"]
    assert created["enabled"] is False
    assert ready("keys", "verify", created["key"]).stdout.startswith("DISABLED")


def test_keys_update_builds_a_merge_patch(ready: Shell) -> None:
    api_id = create_api(ready)
    created = create_key(ready, api_id, "--meta", '{"a": 1}', "--permission", "x", "--expires-in", "30d")

    updated = ready.json("keys", "update", created["id"], "--meta", '{"b": 2}', "--disable", "--no-expiry")
    assert updated["meta"] == {"a": 1, "b": 2}
    assert updated["enabled"] is False
    assert updated["expires_at"] is None
    assert updated["permissions"] == ["x"]

    cleared = ready.json("keys", "update", created["id"], "--clear", "permissions", "--enable", "--credits", "3")
    assert cleared["permissions"] == []
    assert cleared["enabled"] is True
    assert cleared["credits"] == {"remaining": 3, "refill": None}


def test_keys_list_filters_and_pages(ready: Shell) -> None:
    api_id = create_api(ready)
    kept = create_key(ready, api_id, "--owner-id", "alice")
    gone = create_key(ready, api_id, "--owner-id", "bob")
    ready.ok("keys", "revoke", gone["id"])

    assert [k["id"] for k in ready.json("keys", "list", api_id, "--not-revoked")["items"]] == [kept["id"]]
    assert [k["id"] for k in ready.json("keys", "list", api_id, "--owner-id", "bob")["items"]] == [gone["id"]]

    first = ready.json("keys", "list", api_id, "--limit", "1")
    assert first["next_cursor"] is not None
    second = ready.json("keys", "list", api_id, "--limit", "1", "--cursor", first["next_cursor"])
    assert {first["items"][0]["id"], second["items"][0]["id"]} == {kept["id"], gone["id"]}

    table = ready.ok("keys", "list", api_id).stdout
    assert kept["id"] in table
    assert "revoked" in table


def test_apis_create_list_show_delete(ready: Shell) -> None:
    created = ready.json("apis", "create", "billing", "--prefix", "bill_live", "--max-key-age-days", "90")
    assert created["prefix"] == "bill_live"
    assert ready.json("apis", "show", created["id"]) == created
    assert [api["id"] for api in ready.json("apis", "list")["items"]] == [created["id"]]
    assert "billing" in ready.ok("apis", "list").stdout

    key = create_key(ready, created["id"])
    assert key["key"].startswith("bill_live_")

    refused = ready("apis", "delete", created["id"], input="n\n")
    assert refused.exit_code == 1
    assert ready("apis", "show", created["id"]).exit_code == 0

    ready.ok("apis", "delete", created["id"], "--yes")
    assert ready("apis", "show", created["id"]).exit_code == 3
    assert ready("keys", "verify", key["key"]).stdout.strip() == "NOT_FOUND"


def test_keys_delete_asks_first(ready: Shell) -> None:
    api_id = create_api(ready)
    created = create_key(ready, api_id)
    assert ready("keys", "delete", created["id"], input="n\n").exit_code == 1
    ready.ok("keys", "delete", created["id"], input="y\n")
    assert ready("keys", "show", created["id"]).exit_code == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "show", "key_missing"], "no key key_missing"),
        (["keys", "revoke", "key_missing"], "no key key_missing"),
        (["keys", "delete", "key_missing", "--yes"], "no key key_missing"),
        (["keys", "update", "key_missing", "--name", "x"], "no key key_missing"),
        (["keys", "list", "api_missing"], "no API api_missing"),
        (["keys", "create", "api_missing"], "no API api_missing"),
        (["apis", "show", "api_missing"], "no API api_missing"),
        (["apis", "delete", "api_missing", "--yes"], "no API api_missing"),
        (["root-keys", "revoke", "rk_missing"], "no root key rk_missing"),
    ],
)
def test_unknown_ids_exit_3(ready: Shell, args: list[str], message: str) -> None:
    result = ready(*args)
    assert result.exit_code == 3
    assert message in plain_error(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--credits", "-1"], "--credits"),
        (["--expires-at", "2030-01-01"], "--expires-at"),
        (["--expires-in", "soon"], "'soon' is not a duration"),
        (["--expires-in", "\u0663d"], "is not a duration"),  # Arabic-Indic 3: ASCII digits only
        (["--expires-in", "999999999999999w"], "past 9999-12-31"),
        (["--expires-at", "9999-12-31T23:59:59-01:00"], "9999-12-31T23:59:59.999Z"),
        (["--expires-at", "2030-01-01T00:00:00Z", "--expires-in", "1d"], "not both"),
        (["--ratelimit", "api=100"], "NAME=LIMIT/DURATION"),
        (["--ratelimit", "api=\u0661\u0660\u0660/1m"], "NAME=LIMIT/DURATION"),
        (["--meta", "[1, 2]"], "expected a JSON object"),
        (["--meta", "{"], "not valid JSON"),
        (["--ip", "10.0.0.300/8"], "CIDR"),
        (["--role", "admin"], "no role 'admin'"),
        (["--refill-amount", "5", "--refill-interval", "daily"], "needs --credits"),
        (["--permission", ""], "--permission"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(ready: Shell, args: list[str], message: str) -> None:
    api_id = create_api(ready)
    result = ready("keys", "create", api_id, *args)
    assert result.exit_code == 2
    assert message in plain_error(result)


def test_a_bad_permission_query_says_where(ready: Shell) -> None:
    result = ready("keys", "verify", "ks_whatever", "--permissions", "docs.read AND")
    assert result.exit_code == 2
    assert "at character 13" in plain_error(result)


def test_an_empty_stdin_is_a_usage_error(ready: Shell) -> None:
    result = ready("keys", "verify", "-", input="")
    assert result.exit_code == 2
    assert "no key on stdin" in plain_error(result)


def test_update_without_changes_is_a_usage_error(ready: Shell) -> None:
    result = ready("keys", "update", "key_x")
    assert result.exit_code == 2
    assert "nothing to change" in plain_error(result)


def test_apis_create_makes_a_recoverable_api(ready: Shell) -> None:
    assert ready.json("apis", "create", "vault", "--recoverable")["recoverable"] is True


def test_apis_create_names_the_argument_of_a_bad_name(ready: Shell) -> None:
    result = ready("apis", "create", "")
    assert result.exit_code == 2
    assert "(NAME)" in plain_error(result)

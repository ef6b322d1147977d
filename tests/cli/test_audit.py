"""``keystile audit verify`` and ``keystile audit head`` (SPEC A2): exit 0 with the count for an untouched log,
exit 1 naming the entry for a tampered one, and a head that, kept elsewhere, catches a cut tail. On SQLite and on
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re

from keystile.core.clock import SystemClock
from keystile.storage import open_storage

from .helpers import Shell, create_api, init

HEAD = re.compile(r"^(\d+):([0-9a-f]{64}) (\d{4}-\d\d-\d\dT[0-9:.]+Z)$")


def _sql(shell: Shell, sql: str) -> None:
    """Run ``sql`` on the shell's database behind Keystile's back."""

    async def run() -> None:
        storage = await open_storage(shell.database_url, SystemClock())
        try:
            await storage.driver.execute(sql)
        finally:
            await storage.close()

    asyncio.run(run())


def _deployment(shell: Shell) -> None:
    """``init`` (one entry: the first root key) and three APIs: four entries."""
    init(shell)
    for _ in range(3):
        create_api(shell)


def test_an_untouched_log_verifies_with_exit_0_and_the_count(any_shell: Shell) -> None:
    _deployment(any_shell)

    result = any_shell.ok("audit", "verify")

    assert result.stdout.startswith("OK: 4 audit entries checked (seq 1 to 4), head 4:")
    report = any_shell.json("audit", "verify")
    assert (report["ok"], report["checked"], report["problem"]) == (True, 4, None)
    assert report["last_checked"]["seq"] == 4


def test_an_edited_entry_is_named_with_exit_1(any_shell: Shell) -> None:
    _deployment(any_shell)
    _sql(any_shell, "UPDATE audit_log SET target = 'api_elsewhere' WHERE seq = 2")

    result = any_shell("audit", "verify")

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert re.search(r"hash mismatch at entry seq 2 \(id aud_\w+\)", result.stderr), result.stderr
    assert "1 entries before it verified" in result.stderr
    as_json = any_shell("audit", "verify", "--json")
    assert as_json.exit_code == 1
    problem = json.loads(as_json.stdout)["problem"]
    assert (problem["kind"], problem["seq"]) == ("changed", 2)
    assert problem["id"].startswith("aud_")


def test_a_deleted_entry_is_named_as_a_gap(any_shell: Shell) -> None:
    _deployment(any_shell)
    _sql(any_shell, "DELETE FROM audit_log WHERE seq = 2")

    result = any_shell("audit", "verify")

    assert result.exit_code == 1
    assert "gap in seq: seq 2 missing before entry seq 3" in result.stderr


def test_the_head_is_one_line_and_an_anchored_head_catches_a_cut_tail(any_shell: Shell) -> None:
    _deployment(any_shell)
    line = any_shell.ok("audit", "head").stdout.strip()
    match = HEAD.match(line)
    assert match, line
    assert match[1] == "4"
    anchor = line.split()[0]
    head = any_shell.json("audit", "head")
    assert f"{head['seq']}:{head['hash']}" == anchor
    create_api(any_shell)

    assert any_shell.ok("audit", "verify", "--expect-head", anchor).stdout.endswith("; matches 1 anchored head(s)\n")

    # Whoever cuts the tail and moves the head to match goes unseen, but for the head kept elsewhere.
    _sql(any_shell, "DELETE FROM audit_log WHERE seq >= 4")
    _sql(any_shell, "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3)")
    assert any_shell("audit", "verify").exit_code == 0
    result = any_shell("audit", "verify", "--expect-head", anchor)
    assert result.exit_code == 1
    assert "the anchored entry seq 4 is missing (the log ends at seq 3)" in result.stderr


def test_from_starts_at_a_later_entry(any_shell: Shell) -> None:
    _deployment(any_shell)
    _sql(any_shell, "UPDATE audit_log SET actor = 'someone' WHERE seq = 1")

    assert any_shell("audit", "verify").exit_code == 1
    assert any_shell.ok("audit", "verify", "--from", "2").stdout.startswith("OK: 3 audit entries checked (seq 2 to 4)")


def test_a_malformed_anchor_or_start_is_a_usage_error(any_shell: Shell) -> None:
    init(any_shell)
    for args in (
        ("--expect-head", "4"),
        ("--expect-head", "x:" + "0" * 64),
        ("--expect-head", "4:abc"),
        ("--from", "0"),
    ):
        result = any_shell("audit", "verify", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_the_head_of_an_empty_log(shell: Shell) -> None:
    shell.ok("migrate")

    assert shell.ok("audit", "head").stdout == ""
    assert shell.json("audit", "head") is None
    assert shell.ok("audit", "verify").stdout == "OK: no audit entries to check.\n"

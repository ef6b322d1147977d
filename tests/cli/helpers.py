"""Helpers of the CLI tests: ``keystile`` run in-process with click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from keystile.cli import cli

ROOT_KEY = re.compile(r"ks_root_[0-9A-Za-z]{38}")


class Shell:
    """Runs ``keystile`` commands with the environment of one deployment."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.env = {"KEYSTILE_DATA_DIR": str(data_dir), "KEYSTILE_DATABASE_URL": database_url}
        self._runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return self._runner.invoke(cli, list(args), input=input, env={**self.env, **(env or {})})

    def ok(self, *args: str, input: str | None = None) -> Result:
        """Run a command that must succeed."""
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
        return result

    def json(self, *args: str) -> Any:
        """Run a command with ``--json`` and parse its stdout."""
        return json.loads(self.ok(*args, "--json").stdout)


def plain_error(result: Result) -> str:
    """The one error line of a failed command; fails if it printed a traceback instead."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def init(shell: Shell) -> str:
    """Run ``keystile init`` and return the root key it printed."""
    result = shell.ok("init")
    keys = ROOT_KEY.findall(result.stdout)
    assert len(keys) == 1
    return str(keys[0])


def create_api(shell: Shell, *flags: str) -> str:
    created: dict[str, Any] = shell.json("apis", "create", "weather", *flags)
    return str(created["id"])


def create_key(shell: Shell, api_id: str, *flags: str) -> dict[str, Any]:
    created: dict[str, Any] = shell.json("keys", "create", api_id, *flags)
    return created

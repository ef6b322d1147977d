"""The README's first command starts Keystile, and its walkthrough works as written (issue 2, Done when 1-2)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.availability import require_tool

from .server import REPO, Server, free_port

pytestmark = pytest.mark.e2e

README = REPO / "README.md"


def _walkthrough() -> str:
    text = README.read_text()
    block = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->", text, re.S)
    assert block is not None, "the README has no walkthrough block"
    return block.group(1)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Server]:
    """Keystile started by the README's first command, `make run`, with its data in a temporary directory."""
    require_tool("make")
    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data")}
    server = Server(["make", "--no-print-directory", "-C", str(REPO), "run"], tmp_path, env, free_port(), "make-run")
    yield server
    server.stop()


def test_the_readme_names_exactly_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_readme_names_every_service_the_tests_use_and_the_packages_make_test_installs() -> None:
    # Issue 9: the README named PostgreSQL only, and not that `make test` run as root installs Debian packages.
    text = README.read_text()
    paragraph = text[text.index("The tests use") :].split("\n\n", 1)[0]
    installed = re.findall(r"apt-get install -y -qq ([a-z0-9 -]+?) >", (REPO / "Makefile").read_text())
    packages = {package for line in installed for package in line.split()}

    assert "`127.0.0.1:5432`" in paragraph, "PostgreSQL (tests/conftest.py)"
    assert "`127.0.0.1:6379`" in paragraph, "Redis (tests/e2e/server.py, tests/limits)"
    assert packages == {"prometheus", "nginx", "caddy"}
    for package in packages:
        assert f"`{package}`" in paragraph, package
    assert "root" in paragraph


def test_make_run_prints_the_root_key_once_and_the_url(make_run: Server) -> None:
    out = make_run.stdout()
    assert make_run.root_key() in out
    assert f"Keystile listening on {make_run.url}" in out
    assert make_run.root_key() not in make_run.stderr()


def test_the_walkthrough_works_as_written_with_curl(make_run: Server) -> None:
    for tool in ("curl", "jq", "bash"):
        require_tool(tool)
    script = _walkthrough()
    # Only the two values a reader pastes in change: the server's address and the root key it printed.
    script, n_url = re.subn(r"^export KS=.*$", f"export KS={make_run.url}", script, flags=re.M)
    script, n_key = re.subn(r"^export ROOT_KEY=.*$", f"export ROOT_KEY={make_run.root_key()}", script, flags=re.M)
    assert (n_url, n_key) == (1, 1)

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    codes = [json.loads(line)["code"] for line in done.stdout.splitlines() if line.startswith('{"valid"')]
    assert codes == ["VALID", "REVOKED", "NOT_FOUND"]
    assert '["REVOKED","VALID"]' in done.stdout.splitlines(), "the key's log lists its two verifications"
    assert re.search(r"^api_[0-9A-Za-z]{22}$", done.stdout, re.M), "the API id is printed"

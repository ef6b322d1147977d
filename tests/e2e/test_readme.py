"""The README's first command starts Keystile, and its walkthrough works as written (issue 2, Done when 1-2)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.availability import require_tool

from .server import REPO, Server, free_port

# What `make test` adds for development: none of it may be needed to serve.
DEV_DISTRIBUTIONS = ("pytest", "mypy", "ruff", "hypothesis", "fastapi", "flask", "schemathesis", "jsonschema-rs")

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
    command = ["make", "--no-print-directory", "-C", str(REPO), "run"]
    # SIGTERM: make passes it on to `keystile serve` and exits; a SIGINT it would leave to the terminal to deliver
    # to its recipe too, and wait (the test's server has a session of its own, so nothing else sends it).
    server = Server(command, tmp_path, env, free_port(), "make-run", stop_signal=signal.SIGTERM)
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
    assert packages == {"prometheus", "nginx", "caddy", "chromium", "wrk"}
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


def _make_copy(tmp_path: Path) -> Path:
    """The Makefile and pyproject.toml in a directory of their own, without a .venv yet."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, copy / name)
    return copy


def _make(copy: Path, *args: str, path: str | None = None) -> list[str]:
    env = {**os.environ, "PATH": path} if path else None
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(copy), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _pip_installs(lines: list[str]) -> list[str]:
    return [line.split("pip install", 1)[1].split()[-1] for line in lines if "pip install" in line]


def test_make_run_creates_the_venv_and_installs_only_what_serving_needs(tmp_path: Path) -> None:
    require_tool("make")
    copy = _make_copy(tmp_path)

    run = _make(copy, "-n", "run")
    test = _make(copy, "-n", "test")

    assert any(line.endswith("-m venv .venv") for line in run)
    assert _pip_installs(run) == ["pip", "."]  # pip itself, then the package without extras
    assert run[-1] == ".venv/bin/keystile serve"
    assert "'.[dev]'" in _pip_installs(test)


def _fake_venv(copy: Path, tmp_path: Path) -> tuple[Path, str]:
    """A .venv whose python only records the pip commands it is given, and a PATH on which every tool `make test`
    runs answers at once: the Makefile's own logic runs, no package is installed, no test is run."""
    log = tmp_path / "pip.log"
    tools = tmp_path / "tools"
    tools.mkdir()
    venv_bin = copy / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    for name in ("keystile", "ruff", "mypy", "pytest"):
        (venv_bin / name).write_text("#!/bin/sh\nexit 0\n")
    for name in ("promtool", "nginx", "caddy"):
        (tools / name).write_text("#!/bin/sh\nexit 0\n")
    for script in [*venv_bin.iterdir(), *tools.iterdir()]:
        script.chmod(0o755)
    log.write_text("")
    return log, f"{tools}:{os.environ['PATH']}"


def test_make_run_then_make_test_installs_the_dev_extras_once(tmp_path: Path) -> None:
    require_tool("make")
    copy = _make_copy(tmp_path)
    log, path = _fake_venv(copy, tmp_path)

    _make(copy, "run", path=path)
    after_run = log.read_text().splitlines()
    _make(copy, "test", path=path)
    after_test = log.read_text().splitlines()
    _make(copy, "run", path=path)
    _make(copy, "test", path=path)

    assert after_run == ["-m pip install --quiet -e ."]
    assert after_test == [*after_run, "-m pip install --quiet -e .[dev]"]
    assert log.read_text().splitlines() == after_test  # nothing installed again


def test_make_test_then_make_run_installs_nothing_more(tmp_path: Path) -> None:
    require_tool("make")
    copy = _make_copy(tmp_path)
    log, path = _fake_venv(copy, tmp_path)

    _make(copy, "test", path=path)
    _make(copy, "run", path=path)

    assert log.read_text().splitlines() == ["-m pip install --quiet -e .[dev]"]


@pytest.fixture
def base_venv(tmp_path: Path) -> Path:
    """A fresh virtual environment with Keystile installed without extras, from a copy of this checkout."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    return venv


def test_keystile_serves_with_only_the_base_install(base_venv: Path, tmp_path: Path) -> None:
    listed = subprocess.run(
        [str(base_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    installed = {item["name"].lower() for item in json.loads(listed.stdout)}
    assert "keystile" in installed
    assert installed.isdisjoint(DEV_DISTRIBUTIONS)

    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data")}
    server = Server([str(base_venv / "bin" / "keystile"), "serve"], tmp_path, env, free_port(), "base")
    try:
        assert server.root_key() in server.stdout()
        assert f"Keystile listening on {server.url}" in server.stdout()
    finally:
        assert server.stop() == 0


def test_make_run_stops_keystile_when_it_is_stopped(make_run: Server) -> None:
    code = make_run.stop()

    # make died of the SIGTERM it passed on, not of the SIGABRT a hung stop ends with; keystile is gone with it.
    assert code == -signal.SIGTERM, make_run.output()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{make_run.url}/healthz", timeout=5)

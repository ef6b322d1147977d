"""The ``keystile`` group: help, lazy imports, unexpected errors, and what ``serve`` checks before it starts."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from keystile.cli.serve import SETTING_FLAGS, checked, export, listening_url
from keystile.config import Settings

from .helpers import Shell, plain_error

HEAVY = ("starlette", "granian", "asyncpg", "rich", "keystile.service", "keystile.storage")


def test_help_imports_no_web_stack_no_driver_and_no_rich() -> None:
    script = (
        "import sys\n"
        "from keystile.cli import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='keystile')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert "LOADED []" in done.stdout
    assert "Exit codes:" in done.stdout


def test_python_dash_m_keystile_is_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keystile", "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.startswith("keystile, version ")


def test_an_unexpected_error_is_one_line_unless_debug(shell: Shell) -> None:
    shell.data_dir.parent.mkdir(parents=True, exist_ok=True)
    shell.data_dir.write_text("a file where the data directory should be")

    result = shell("init")
    assert result.exit_code == 1
    assert "FileExistsError" in plain_error(result)

    debug = shell("--debug", "init")
    assert debug.exit_code == 1
    assert isinstance(debug.exception, FileExistsError)  # re-raised, so the traceback is shown


def test_serve_has_a_flag_for_every_setting() -> None:
    assert sorted(name for name, _, _ in SETTING_FLAGS) == sorted(field.name for field in dataclasses.fields(Settings))


def test_exported_settings_read_back_the_same(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {},
        data_dir=tmp_path,
        port=9999,
        redis_url="redis://127.0.0.1:6379/0",
        trusted_proxies="10.0.0.0/8,::1/128",
        log_level="debug",
    )
    environ = {"KEYSTILE_TLS_CERT": "/stale/cert.pem"}
    export(settings, environ)
    assert "KEYSTILE_TLS_CERT" not in environ
    assert Settings.from_env(environ) == settings


def test_serve_runs_one_worker_without_redis_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert checked(Settings(database_url="sqlite:///x.db", workers=4)).workers == 1
    said = capsys.readouterr().err
    assert "rate limits" in said
    assert "SPEC" not in said  # users have no such document
    shared = Settings(database_url="sqlite:///x.db", workers=4, redis_url="redis://127.0.0.1:6379")
    assert checked(shared).workers == 4


def test_listening_url_shows_the_scheme_and_brackets_ipv6(tmp_path: Path) -> None:
    assert listening_url(Settings(host="::1", port=8443)) == "http://[::1]:8443"
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    assert listening_url(Settings(host="0.0.0.0", tls_cert=cert, tls_key=key)) == "https://0.0.0.0:8787"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database-url", "memory://"], "memory://"),
        (["--tls-cert", "/nonexistent/cert.pem"], "both --tls-cert and --tls-key"),
        (["--port", "0"], "KEYSTILE_PORT"),
        (["--port", "http"], "'http' is not a valid integer"),
    ],
)
def test_serve_refuses_settings_it_cannot_honour_before_starting(shell: Shell, args: list[str], message: str) -> None:
    result = shell("serve", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not shell.data_dir.exists()


def test_serve_refuses_a_missing_tls_file_naming_its_setting(shell: Shell) -> None:
    result = shell("serve", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem")
    assert result.exit_code == 8
    assert "cannot read /nonexistent/cert.pem" in plain_error(result)
    assert "--tls-cert or KEYSTILE_TLS_CERT" in plain_error(result)
    assert not shell.data_dir.exists()


def test_serve_takes_the_global_options_too(shell: Shell) -> None:
    result = shell("--database-url", "memory://", "serve")
    assert result.exit_code == 2
    assert "memory://" in plain_error(result)

"""``keystile serve`` that cannot listen says why in one line, with an exit code of its own, before it claims to
listen: a busy port (another keystile serve included), an address the machine does not have, unusable TLS files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .certs import self_signed
from .server import BIN, ROOT_KEY_RE, START_TIMEOUT_S, Server, cli, free_port, serve

pytestmark = pytest.mark.e2e

PORT_IN_USE = 6
CANNOT_LISTEN = 7
BAD_TLS = 8


@dataclass(frozen=True)
class Refusal:
    code: int
    stdout: str
    stderr: str

    @property
    def line(self) -> str:
        """The one line on stderr (the test fails on more, such as a log line or a backtrace)."""
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("Error: ")
        return lines[0]


def refused(workdir: Path, *args: str, env: Mapping[str, str] | None = None, command: str = "serve") -> Refusal:
    """Run ``keystile serve ARGS`` in ``workdir``, which must exit by itself (a server that starts fails the test);
    ``RUST_BACKTRACE=1`` is set, as it was when the backtraces were seen."""
    workdir.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [str(BIN / "keystile"), command, *args],
        cwd=workdir,
        env={**os.environ, "RUST_BACKTRACE": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"keystile {command} started instead of refusing:\n{stdout}\n{stderr}") from None
    assert "listening" not in stdout.lower()
    assert "backtrace" not in stderr.lower()
    assert process.returncode != 0
    return Refusal(process.returncode, stdout, stderr)


@pytest.fixture
def first(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "first").mkdir()
    running = serve(tmp_path / "first")
    yield running
    running.stop()


def _port(server: Server) -> str:
    return server.url.rsplit(":", 1)[1]


def test_a_second_serve_on_the_port_of_a_running_one_is_refused(first: Server, tmp_path: Path) -> None:
    """granian listens with SO_REUSEPORT: a second server used to share the port, answering from its own
    database every other request."""
    second = refused(tmp_path / "second", env={"KEYSTILE_PORT": _port(first)})

    assert second.code == PORT_IN_USE
    assert f"port {_port(first)}" in second.line
    assert "--port or KEYSTILE_PORT" in second.line
    assert ROOT_KEY_RE.search(second.stdout) is None
    assert not (tmp_path / "second" / "keystile-data").exists()  # refused before anything was set up
    root = {"Authorization": f"Bearer {first.root_key()}"}
    with httpx.Client(base_url=first.url, headers=root) as http:
        assert {http.get("/v1/apis").status_code for _ in range(40)} == {200}


def test_a_port_held_by_another_program_is_refused(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = refused(tmp_path, "--port", str(port))

    assert result.code == PORT_IN_USE
    assert "--port or KEYSTILE_PORT" in result.line
    assert not (tmp_path / "keystile-data").exists()


def test_an_address_the_machine_does_not_have_is_refused(tmp_path: Path) -> None:
    result = refused(tmp_path, "--host", "192.0.2.1", "--port", str(free_port()))  # TEST-NET-1, never local

    assert result.code == CANNOT_LISTEN
    assert "192.0.2.1" in result.line
    assert "--host or KEYSTILE_HOST" in result.line


def test_a_host_name_instead_of_an_address_is_a_usage_error(tmp_path: Path) -> None:
    result = refused(tmp_path, "--host", "localhost", "--port", str(free_port()))

    assert result.code == 2
    assert "--host or KEYSTILE_HOST" in result.line


@pytest.mark.parametrize(
    ("spoil", "setting"),
    [
        (lambda cert, key: cert.write_text("not a certificate\n"), "--tls-cert or KEYSTILE_TLS_CERT"),
        (lambda cert, key: key.write_text("not a key\n"), "--tls-key or KEYSTILE_TLS_KEY"),
        (lambda cert, key: (cert.unlink(), cert.mkdir()), "--tls-cert or KEYSTILE_TLS_CERT"),
        (lambda cert, key: (key.unlink(), key.mkdir()), "--tls-key or KEYSTILE_TLS_KEY"),
        (lambda cert, key: key.write_bytes(self_signed(key.parent / "other")[1].read_bytes()), "--tls-key"),
    ],
    ids=["cert-not-pem", "key-not-pem", "cert-directory", "key-directory", "key-of-another-cert"],
)
def test_unusable_tls_files_are_refused_naming_the_setting(
    tmp_path: Path, spoil: Callable[[Path, Path], object], setting: str
) -> None:
    (tmp_path / "other").mkdir()
    cert, key, _ = self_signed(tmp_path)
    spoil(cert, key)

    result = refused(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), "--port", str(free_port()))

    assert result.code == BAD_TLS
    assert setting in result.line
    assert not (tmp_path / "keystile-data").exists()


def test_the_proxy_names_its_own_setting_for_a_busy_port(tmp_path: Path) -> None:
    cli("init", workdir=tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = refused(
            tmp_path,
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            f"127.0.0.1:{port}",
            command="proxy",
        )

    assert result.code == PORT_IN_USE
    assert "--listen or KEYSTILE_PROXY_LISTEN" in result.line


def test_a_port_taken_between_the_check_and_the_bind_is_reported_the_same_way(tmp_path: Path) -> None:
    """The check cannot hold the port for granian; when another program takes it in between, granian's own
    failure (a RuntimeError carrying a Rust backtrace) is turned into the same line. The race is made certain
    by running serve without its check."""
    script = (
        "import sys\n"
        "from keystile.cli import cli\n"
        "sys.modules['keystile.cli.serve'].check_address = lambda *args, **kwargs: None\n"
        "cli(sys.argv[1:], prog_name='keystile')\n"
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [str(BIN / "python"), "-c", script, "serve", "--port", str(port)],
            cwd=tmp_path,
            env={**os.environ, "RUST_BACKTRACE": "1"},
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )

    assert done.returncode == PORT_IN_USE
    assert "Root key" in done.stdout  # the check did not run: serve went on to its setup
    assert "listening" not in done.stdout.lower()
    assert "backtrace" not in done.stderr.lower()
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    assert "--port or KEYSTILE_PORT" in last

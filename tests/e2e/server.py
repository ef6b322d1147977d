"""Real ``keystile serve`` processes for end-to-end tests, started the way the README says."""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROOT_KEY_RE = re.compile(r"\bks_root_[0-9A-Za-z]{38}\b")
START_TIMEOUT_S = 60.0
REDIS_URL = os.environ.get("KEYSTILE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    """Whether the shared Redis of the tests (``KEYSTILE_TEST_REDIS_URL``) answers."""
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def non_loopback_address() -> str | None:
    """An address of this machine other than loopback, if it has one (the one it would reach others from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: sets the route, sends nothing
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


class Server:
    """A server process with its output captured to files in ``workdir``."""

    def __init__(
        self,
        command: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        port: int,
        name: str = "server",
        *,
        tls: ssl.SSLContext | None = None,
        ready: tuple[str, int] = ("/healthz", 200),
        stop_signal: signal.Signals = signal.SIGINT,
    ) -> None:
        """``tls``: the server speaks HTTPS, and this context trusts its certificate. ``ready``: the path and
        status that say the server is up (a proxy answers 401 to a request without a key). ``stop_signal``: what
        :meth:`stop` sends the main process (``make`` passes SIGTERM on to its recipe, not SIGINT)."""
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.verify: ssl.SSLContext | bool = tls or True
        self._ready = ready
        self._stop_signal = stop_signal
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                list(command),
                cwd=workdir,
                # PYTHONFAULTHANDLER: a server that hangs on stop prints every thread's stack on SIGABRT (see stop).
                env={**os.environ, "PYTHONFAULTHANDLER": "1", **env, "KEYSTILE_PORT": str(port)},
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        # A test run that is interrupted (Ctrl-C, a timeout) must not leave servers behind.
        atexit.register(self.stop)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        # Waiting for another process to come up, not for time to pass: poll until it answers or a deadline.
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                path, status = self._ready
                if httpx.get(f"{self.url}{path}", timeout=1, verify=self.verify).status_code == status:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not answer within {START_TIMEOUT_S} s:\n{self.output()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout()}\n--- stderr\n{self.stderr()}"

    def root_key(self) -> str:
        """The root key the first start printed (exactly once)."""
        found = ROOT_KEY_RE.findall(self.stdout())
        assert len(found) == 1, f"expected one root key on stdout, found {len(found)}"
        return str(found[0])

    def stop(self) -> int:
        """Stop the server as a process manager would, and return its exit code.

        SIGINT goes to the main process only, which stops its workers: granian's sync (WSGI) workers sometimes
        miss their stop when they get the terminal's SIGINT and their parent's SIGTERM at once, and then the
        whole stop waited for the kill below (issue 9: Flask examples took 30 s each to stop)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, self._stop_signal)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # Hung: have every process of the group print its threads' stacks to stderr, for the report.
                os.killpg(self.process.pid, signal.SIGABRT)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        return self.process.returncode


def serve(
    workdir: Path, env: Mapping[str, str] | None = None, name: str = "server", tls: ssl.SSLContext | None = None
) -> Server:
    """``keystile serve`` from this virtual environment, in ``workdir`` (over HTTPS when ``env`` names a
    certificate that ``tls`` trusts)."""
    return Server([str(BIN / "keystile"), "serve"], workdir, env or {}, free_port(), name, tls=tls)


def cli(*args: str, workdir: Path, env: Mapping[str, str] | None = None, stdin: str | None = None) -> str:
    """Run the ``keystile`` command in ``workdir``; returns stdout, raising on a non-zero exit."""
    done = subprocess.run(
        [str(BIN / "keystile"), *args],
        cwd=workdir,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"keystile {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def raw_exchange(url: str, data: bytes, *, leave: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is over a new connection (what no HTTP client sends: a malformed chunked body, a body
    cut short) and read one answer: status, headers (lower-case names) and a Content-Length body. With ``leave``
    the connection is closed at once, unread (status 0)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        if leave:
            return 0, {}, b""
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer read from ``sock``: status, headers (lower-case names) and a Content-Length body."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without answering: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


async def post_many(
    url: str, path: str, bodies: list[bytes], headers: dict[str, str], connections: int = 32
) -> list[tuple[int, bytes]]:
    """POST every body to ``url + path`` over ``connections`` keep-alive connections, as fast as they answer.

    A minimal HTTP/1.1 client (one write per request, Content-Length framing): a storm of a thousand requests
    has to be over in well under a second for rate-limit tests, which general-purpose async clients cannot do
    on two shared cores.
    """
    host, port = url.removeprefix("http://").split(":")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for index, body in enumerate(bodies):
        queue.put_nowait((index, body))
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(bodies)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not queue.empty():
                index, body = queue.get_nowait()
                request = (
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                answers[index] = (int(status_line.split()[1]), await reader.readexactly(length))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return answers

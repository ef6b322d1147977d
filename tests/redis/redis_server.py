"""A ``redis-server`` of a test's own, on a free port, to stop and start again (never the shared one)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.processes import stop_process

START_TIMEOUT_S = 10.0


class RedisServer:
    """A ``redis-server`` of a test's own, without persistence, that the test can stop and start again; with
    ``password``, it asks for it (``url`` carries it)."""

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.workdir = workdir
        self.password = password
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (empty: nothing is saved) and wait until it answers."""
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        self.stop()
                        raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                    time.sleep(0.01)  # polling for the server to come up, not waiting for time to pass
        finally:
            client.close()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server, paused or not (killed if it does not stop); its data is gone."""
        if self._process is not None:
            stop_process(self._process)
            self._process = None
